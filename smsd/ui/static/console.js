// smsd console: progressive enhancement only.  Every page works without this
// file; with it, pages follow Server-Sent Events, the text box counts SMS
// parts as you type, and the bulk upload shows its progress.
"use strict";

(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // --- SMS counter: the alphabet comes from the page (smsd.codec.gsm7) ------
  function count(text, basic, ext) {
    let septets = 0;
    let gsm = true;
    for (const ch of text) {
      if (basic.includes(ch)) septets += 1;
      else if (ext.includes(ch)) septets += 2;
      else { gsm = false; break; }
    }
    if (gsm) {
      const parts = septets === 0 ? 0 : (septets <= 160 ? 1 : Math.ceil(septets / 153));
      return { enc: "GSM-7", units: septets, parts: parts };
    }
    const units = text.length; // UTF-16 code units, as UCS-2 counts them
    return { enc: "UCS-2", units: units, parts: units <= 70 ? 1 : Math.ceil(units / 67) };
  }

  function wireCounters(root) {
    root.querySelectorAll("textarea[data-counter]").forEach((area) => {
      const out = document.getElementById(area.dataset.counter);
      if (!out) return;
      const limit = parseInt(out.dataset.limit, 10);
      const update = () => {
        const c = count(area.value, out.dataset.gsm, out.dataset.gsmExt);
        const chars = [...area.value].length;
        out.textContent = chars + " / " + limit + " characters · " + c.enc + " · " +
          c.parts + (c.parts === 1 ? " part" : " parts");
        out.classList.toggle("over", chars > limit);
      };
      area.addEventListener("input", update);
      update();
    });
  }

  // --- live regions: re-fetch this page, swap [data-live-region] by id -----
  let pending = null;
  function refresh() {
    if (pending) return;
    pending = setTimeout(async () => {
      pending = null;
      try {
        const res = await fetch(location.href, { credentials: "same-origin" });
        if (!res.ok) return;
        const doc = new DOMParser().parseFromString(await res.text(), "text/html");
        doc.querySelectorAll("[data-live-region]").forEach((fresh) => {
          const old = document.getElementById(fresh.id);
          if (old && old.innerHTML !== fresh.innerHTML) {
            old.replaceWith(document.adoptNode(fresh));
          }
        });
      } catch (e) { /* offline for a moment: the next event retries */ }
    }, 150);
  }

  function follow() {
    const topics = (document.body.dataset.live || "").split(/\s+/).filter(Boolean);
    if (!topics.length || !window.EventSource) return;
    const es = new EventSource("/ui/events");
    // Whatever changed between this page's rendering and the stream's
    // (re)connection had no event to carry it: fetch the page once then.
    es.addEventListener("open", refresh);
    const wants = (kind, id) => topics.some((t) => {
      const [k, want] = t.split(":");
      return k === kind && (want === undefined || String(id) === want);
    });
    ["status", "conversation", "modems", "call"].forEach((kind) => {
      es.addEventListener(kind, (ev) => {
        const data = JSON.parse(ev.data);
        if (wants(kind, data.id)) refresh();
      });
    });
    window.addEventListener("pagehide", () => es.close());
  }

  // --- bulk CSV: post the numbers in batches, with a progress bar ----------
  function wireBulk() {
    const form = document.getElementById("bulk-form");
    if (!form) return;
    form.addEventListener("submit", async (ev) => {
      const file = form.querySelector('input[type="file"]').files[0];
      if (!file) return;
      ev.preventDefault();
      const numbers = (await file.text()).split(/[\r\n,;]+/)
        .map((s) => s.trim().replace(/^"|"$/g, "")).filter((s) => s && !/^number$/i.test(s));
      const bar = document.getElementById("bulk-progress");
      const result = document.getElementById("bulk-result");
      bar.max = numbers.length; bar.value = 0; bar.hidden = false;
      result.textContent = "";
      const refused = [];
      let accepted = 0;
      const batch = 200;
      for (let i = 0; i < numbers.length; i += batch) {
        const body = new FormData();
        body.set("csrf", csrf());
        body.set("text", form.querySelector("textarea").value);
        body.set("send_at", form.querySelector('input[type="datetime-local"]').value);
        body.set("to", numbers.slice(i, i + batch).join(","));
        const res = await fetch("/ui/send/batch", {
          method: "POST", body: body, credentials: "same-origin",
          headers: { "X-CSRF-Token": csrf() },
        });
        const answer = await res.json();
        if (!res.ok && !answer.refused) { result.textContent = answer.error; return; }
        accepted += answer.accepted || 0;
        (answer.refused || []).forEach((r) => refused.push(r));
        bar.value = Math.min(numbers.length, i + batch);
      }
      const p = document.createElement("p");
      p.setAttribute("role", "status");
      p.textContent = accepted + " queued, " + refused.length + " refused.";
      result.appendChild(p);
      if (refused.length) {
        const ul = document.createElement("ul");
        ul.className = "refused";
        refused.forEach((r) => {
          const li = document.createElement("li");
          li.textContent = r.number + ": " + r.reason;
          ul.appendChild(li);
        });
        result.appendChild(ul);
      }
    });
  }

  // --- confirm buttons (no inline handlers under the CSP) -------------------
  function wireConfirm() {
    document.querySelectorAll("form[data-confirm]").forEach((f) => {
      f.addEventListener("submit", (ev) => {
        if (!window.confirm(f.dataset.confirm)) ev.preventDefault();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireCounters(document);
    wireBulk();
    wireConfirm();
    follow();
  });
})();
