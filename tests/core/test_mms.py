"""MMS rules (SEED-NOTES "MMS"): pure planning of what goes as media, as SMS, or is dropped."""

from __future__ import annotations

from smsd.core.mms import (
    MAX_FILES,
    MAX_TOTAL_BYTES,
    TEXT_FILE_SMS_CHARS,
    Attachment,
    plan_mms,
    safe_filename,
    split_text,
)


def jpg(name: str, size: int = 10) -> Attachment:
    return Attachment(name, "image/jpeg", b"\xff" * size)


class TestPlan:
    def test_text_with_attachments_is_a_separate_sms(self) -> None:
        """The typed text is its own SMS; the files are the media."""
        plan = plan_mms("See attached", [jpg("a.jpg"), jpg("b.jpg")])
        assert plan.texts == ("See attached",)
        assert [f.filename for f in plan.media] == ["a.jpg", "b.jpg"] and plan.dropped == ()

    def test_unconfigured_types_are_dropped_by_name(self) -> None:
        """Only the configured types go; the others are named with the reason."""
        files = [jpg("a.jpg"), Attachment("x.exe", "application/x-msdownload", b"MZ")]
        plan = plan_mms(None, files, ["image/jpeg"])
        assert [f.filename for f in plan.media] == ["a.jpg"]
        assert [(d.filename, d.reason) for d in plan.dropped] == [
            ("x.exe", "type application/x-msdownload is not accepted")]

    def test_at_most_ten_files(self) -> None:
        """Files beyond the tenth are dropped, each named."""
        plan = plan_mms(None, [jpg(f"{i}.jpg") for i in range(12)])
        assert len(plan.media) == MAX_FILES
        assert [d.filename for d in plan.dropped] == ["10.jpg", "11.jpg"]

    def test_over_3_5_mb_drops_the_largest_until_the_rest_fit(self) -> None:
        """Together over 3.5 MB: the largest go first, until the rest fit."""
        files = [jpg("small.jpg", 500_000), jpg("big.jpg", 2_000_000),
                 jpg("mid.jpg", 1_500_000), jpg("huge.jpg", 3_000_000)]
        plan = plan_mms(None, files)
        assert [d.filename for d in plan.dropped] == ["huge.jpg", "big.jpg"]
        assert [f.filename for f in plan.media] == ["small.jpg", "mid.jpg"]
        assert sum(len(f.data) for f in plan.media) <= MAX_TOTAL_BYTES

    def test_exactly_3_5_mb_fits(self) -> None:
        """The limit itself is allowed."""
        plan = plan_mms(None, [jpg("a.jpg", MAX_TOTAL_BYTES)])
        assert plan.dropped == () and len(plan.media) == 1

    def test_text_file_becomes_sms_text_split_over_4500(self) -> None:
        """A text/plain attachment is SMS text, in pieces of at most 4500 characters."""
        words = ("word " * 2000).strip()  # 9999 characters
        plan = plan_mms("hi", [Attachment("note.txt", "text/plain; charset=utf-8",
                                          words.encode())])
        assert plan.media == ()
        assert plan.texts[0] == "hi" and len(plan.texts) == 4
        assert all(len(t) <= TEXT_FILE_SMS_CHARS for t in plan.texts)
        assert " ".join(plan.texts[1:]) == words

    def test_text_file_that_is_not_utf8_is_dropped(self) -> None:
        """A text file that does not decode is named, not sent as garbage."""
        plan = plan_mms(None, [Attachment("n.txt", "text/plain", b"\xff\xfe\x00bad")])
        assert [d.reason for d in plan.dropped] == ["text file is not UTF-8"]


def test_split_text_cuts_at_words_and_never_exceeds() -> None:
    """Pieces end at a space or newline when one is in the second half; none is longer."""
    pieces = split_text("a" * 4000 + " " + "b" * 4000)
    assert pieces == ["a" * 4000, "b" * 4000]
    assert [len(p) for p in split_text("x" * 9001)] == [4500, 4500, 1]


def test_safe_filename() -> None:
    """Paths and odd characters never reach the disk or a URL."""
    assert safe_filename("../../etc/passwd", 1) == "passwd"
    assert safe_filename("Photo 1 (é).JPG", 1) == "Photo_1_.JPG"
    assert safe_filename("...", 3) == "file3"
