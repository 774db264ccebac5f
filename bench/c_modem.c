/* An independent modem simulator for the daemon's benchmarks: N generic GSM
 * modems on pseudo-terminals, one epoll loop, replies written at their due
 * time by CLOCK_MONOTONIC timerfds.
 *
 * Why it exists: bench/daemon_cost_bench.py measured the daemon against
 * smsd's own Python simulator, whose sixteen modems share one Python event
 * loop and answer their timed replies a millisecond or so late, twice per
 * send: the harness, not the daemon, then takes a tenth of the scale rows.
 * Issue 17's tester used a simulator that is not ours.  This one is written
 * from the standards (ITU-T V.250 for the command line, 3GPP TS 27.007 for
 * the general commands, TS 27.005 for SMS in PDU mode, TS 23.040 for the
 * SMS-STATUS-REPORT it builds), shares no code with smsd, and keeps its
 * latency to the microsecond.
 *
 *   cc -O2 -o c_modem bench/c_modem.c -lutil
 *   ./c_modem [-n MODEMS] [-l LINK] [-L LATENCY_MS] [-s SEND_MS] [-r] [-c]
 *             [-d REPORT_DELAY_MS] [-t TIMING.json]
 *
 *   -n  modems (1..256, default 1), each on its own pty
 *   -l  a symlink to each pty's slave: LINK with one modem, LINK0..LINKn-1
 *       with more (what smsd's config names as the modem's path)
 *   -L  every command's answer is written LATENCY_MS after its end (the
 *       AT+CMGS prompt too)
 *   -s  the network's part of a send: the AT+CMGS result comes
 *       LATENCY_MS + SEND_MS after the Ctrl-Z
 *   -r  a status report for every sent message that asked for one (TP-SRR),
 *       REPORT_DELAY_MS (-d, default 0) after its +CMGS; while "SR" is full
 *       (50 reports) the network holds them until AT+CMGD frees a slot
 *   -c  <ds>=1 supported (+CDS routed directly, acknowledged with +CNMA when
 *       AT+CSMS=1); without it only <ds>=0 and 2 (+CDSI, stored in "SR")
 *   -t  at exit, write {"late": [...], "turnaround": [...]} in seconds: how
 *       late each timed reply was written against its due time, and the
 *       time from a send's final result to the next AT+CMGS on that modem
 *
 * It prints one line per modem ("modem I SLAVE LINK"), then "READY", and
 * serves until its standard input closes.  It keeps each slave open itself,
 * so a driver closing and reopening the port (smsd's reconnects, a DTR drop)
 * is no hang-up here and the modem keeps its settings, as a USB modem does.
 *
 * What a generic modem answers here: V.250 E/V/Q/Z/&F/&C/&D/I, +GCAP,
 * +CGMI/+CGMM/+CGMR/+CGSN (and the +GMx forms), +CIMI, +CCID, +CPIN
 * (READY), +CSQ, +CREG (registered, home), +COPS, +CFUN, +CSCS, +CMEE,
 * +CNUM, +CSCA, +CMGF (PDU only), +CSMS, +CNMI, +CPMS (SM, ME, SR),
 * +CMGS, +CMGL, +CMGR, +CMGD, +CNMA.  Anything else is ERROR, as it is on
 * a modem without that feature (it has no +CEREG: a GSM modem).  Nothing is
 * ever received, so SM and ME stay empty.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_MODEMS 256
#define LINE_CAP 512        /* V.250 asks for at least 40 characters */
#define PDU_HEX_CAP 400     /* SCA (12 octets) + SUBMIT TPDU (176 octets), in hex */
#define IN_CAP 8192         /* input held while an answer is due */
#define OUT_CAP 65536       /* output the driver has not read yet */
#define REPLY_CAP 8192
#define SR_SLOTS 50         /* status-report memory "SR" */
#define SM_SLOTS 20
#define ME_SLOTS 50
#define QUEUE_CAP 256       /* reports the network holds until their time comes */
#define CTRL_Z 0x1a
#define ESC 0x1b

enum mem { SM, ME, SR };
static const char *MEM_NAME[] = {"SM", "ME", "SR"};
static const int MEM_SLOTS[] = {SM_SLOTS, ME_SLOTS, SR_SLOTS};

/* A status report the network will send: the message reference and the
 * recipient's address field (TP-DA of the SUBMIT: length, type, digits). */
struct report {
    double due;
    int mr;
    unsigned char ra[12];
    int ra_len;
};

struct stored {
    int used, read;
    char hex[128];      /* with the SMSC address in front, as +CMGR shows it */
    int tpdu_len;
};

struct modem {
    int idx, master, slave, reply_tfd, report_tfd;
    char slave_name[64], link[4096];
    /* settings (ATZ / AT&F restore them) */
    int echo, cmee, creg_n, csms, cnmi[5];
    enum mem mem[3];
    char smsc[24];
    int smsc_toa;
    int mr;
    /* command line and PDU entry */
    int in_pdu, pdu_len_expected, pdu_bad;
    char line[LINE_CAP];
    int line_len, line_over;
    char pdu[PDU_HEX_CAP + 1];
    int pdu_hex;
    /* input not handled yet (an answer is due first) */
    unsigned char in[IN_CAP];
    int in_len;
    /* the answer being held back for the latency */
    int busy;
    char reply[REPLY_CAP];
    int reply_len;
    double due;
    int timed, reply_is_send, reply_enters_pdu;
    struct report reply_report; /* queued when a send's result is written */
    int reply_has_report;
    /* output the pty would not take yet */
    char out[OUT_CAP];
    int out_len, out_watch;
    /* timing figures */
    double final_at;
    int have_final;
    /* status reports */
    struct report queue[QUEUE_CAP];
    int q_head, q_len;
    struct stored sr[SR_SLOTS];
    int cnma_due;
};

static struct modem *modems;
static int n_modems = 1, ep;
static double latency_s, send_s, report_delay_s;
static int reports_on, cds_ok;
static const char *link_prefix, *timing_path;
static double *late, *turn;
static size_t n_late, cap_late, n_turn, cap_turn;
static long dropped_out, dropped_reports;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void keep(double **arr, size_t *n, size_t *cap, double v) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 4096;
        *arr = realloc(*arr, *cap * sizeof **arr);
        if (*arr == NULL) {
            perror("realloc");
            exit(1);
        }
    }
    (*arr)[(*n)++] = v;
}

static void arm(int tfd, double when) {
    struct itimerspec it = {0};
    if (when > 0) {
        it.it_value.tv_sec = (time_t)when;
        it.it_value.tv_nsec = (long)((when - (double)(time_t)when) * 1e9);
        if (it.it_value.tv_sec == 0 && it.it_value.tv_nsec == 0) it.it_value.tv_nsec = 1;
    }
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &it, NULL) != 0) {
        perror("timerfd_settime");
        exit(1);
    }
}

static void watch_out(struct modem *m, int on) {
    if (on == m->out_watch) return;
    struct epoll_event e = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u64 = (uint64_t)m->idx << 2};
    epoll_ctl(ep, EPOLL_CTL_MOD, m->master, &e);
    m->out_watch = on;
}

static void flush_out(struct modem *m) {
    while (m->out_len > 0) {
        ssize_t w = write(m->master, m->out, (size_t)m->out_len);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            m->out_len = 0; /* nobody can read it */
            break;
        }
        memmove(m->out, m->out + w, (size_t)(m->out_len - w));
        m->out_len -= (int)w;
    }
    watch_out(m, m->out_len > 0);
}

static void emit(struct modem *m, const char *data, int len) {
    if (m->out_len + len > OUT_CAP) { /* the driver reads nothing: drop, as a UART would */
        dropped_out += len;
        return;
    }
    memcpy(m->out + m->out_len, data, (size_t)len);
    m->out_len += len;
    flush_out(m);
}

/* ------------------------------------------------------------ answers */

static void add(struct modem *m, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int room = REPLY_CAP - m->reply_len;
    int k = vsnprintf(m->reply + m->reply_len, (size_t)room, fmt, ap);
    va_end(ap);
    if (k > 0) m->reply_len += k < room ? k : room - 1;
}

/* One information text line (V.250 5.7.1 with V1: CR LF text CR LF). */
#define INFO(...)                 \
    do {                          \
        add(m, "\r\n");           \
        add(m, __VA_ARGS__);      \
        add(m, "\r\n");           \
    } while (0)

/* Final result codes: the command's own, so the line stops here. */
enum result { A_OK, A_ERROR, A_CME, A_CMS, A_PROMPT };
static int err_code;

static enum result cme(int code) {
    err_code = code;
    return A_CME;
}

static enum result cms(int code) {
    err_code = code;
    return A_CMS;
}

static const char *cme_text(int code) {
    switch (code) {
    case 3: return "operation not allowed";
    case 4: return "operation not supported";
    case 50: return "Incorrect parameters";
    default: return "unknown";
    }
}

/* TS 27.005 3.2.5 <err>, the ones used here. */
#define CMS_NOT_ALLOWED 302
#define CMS_NOT_SUPPORTED 303
#define CMS_BAD_PDU 304
#define CMS_BAD_INDEX 321
#define CMS_NO_CNMA 340

/* --------------------------------------------------------- the network */

static void semi_octets(char *hex, const char *digits) {
    /* BCD with the nibbles of each octet swapped, F-padded (TS 23.040 9.1.2.3) */
    int n = (int)strlen(digits), o = 0;
    for (int i = 0; i < n; i += 2) {
        hex[o++] = i + 1 < n ? digits[i + 1] : 'F';
        hex[o++] = digits[i];
    }
    hex[o] = 0;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = toupper(c);
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* An SMS-STATUS-REPORT (TS 23.040 9.2.2.3), delivered now, with the SMSC
 * address in front (TS 27.005 3.1 <pdu>); returns the TPDU's length. */
static int status_report(struct modem *m, const struct report *r, char *hex) {
    const char *num = m->smsc[0] == '+' ? m->smsc + 1 : m->smsc;
    char sca[24];
    semi_octets(sca, num);
    int o = sprintf(hex, "%02X%02X%s", (int)(strlen(sca) / 2 + 1), m->smsc_toa, sca);
    /* TP-MTI 10 (status report), TP-MMS 1 (no more messages), TP-SRQ 0 (of a SUBMIT) */
    o += sprintf(hex + o, "%02X%02X", 0x06, r->mr);
    for (int i = 0; i < r->ra_len; i++) o += sprintf(hex + o, "%02X", r->ra[i]);
    time_t t = time(NULL);
    struct tm u;
    gmtime_r(&t, &u);
    int f[6] = {u.tm_year % 100, u.tm_mon + 1, u.tm_mday, u.tm_hour, u.tm_min, u.tm_sec};
    for (int k = 0; k < 2; k++) { /* TP-SCTS, then TP-DT: the same second, UTC */
        for (int i = 0; i < 6; i++) o += sprintf(hex + o, "%d%d", f[i] % 10, f[i] / 10);
        o += sprintf(hex + o, "00");
    }
    sprintf(hex + o, "00"); /* TP-ST: received by the SME */
    return 2 + r->ra_len + 7 + 7 + 1;
}

static int idle(struct modem *m) {
    return !m->busy && !m->in_pdu && m->line_len == 0;
}

/* Reports whose time has come, as <ds> says (TS 27.005 3.4.1); <mode>=2
 * holds them while a command runs, then they follow its answer. */
static void deliver_reports(struct modem *m) {
    double t = now();
    int full = 0;
    while (m->q_len > 0 && idle(m)) {
        struct report *r = &m->queue[m->q_head];
        if (r->due > t) break;
        int slot = -1;
        for (int i = 0; i < SR_SLOTS && slot < 0 && m->cnmi[3] == 2; i++)
            if (!m->sr[i].used) slot = i;
        /* "SR" full: the network keeps the report and offers it again once
         * a slot is free (after an AT+CMGD, whose answer brings us back). */
        if (m->cnmi[3] == 2 && slot < 0) {
            full = 1;
            break;
        }
        m->q_head = (m->q_head + 1) % QUEUE_CAP;
        m->q_len--;
        char hex[128];
        int tpdu = status_report(m, r, hex);
        if (m->cnmi[3] == 1) {
            char urc[192];
            int k = snprintf(urc, sizeof urc, "\r\n+CDS: %d\r\n%s\r\n", tpdu, hex);
            emit(m, urc, k);
            if (m->csms == 1) m->cnma_due++;
        } else if (m->cnmi[3] == 2) {
            m->sr[slot] = (struct stored){.used = 1, .read = 0, .tpdu_len = tpdu};
            strcpy(m->sr[slot].hex, hex);
            char urc[64];
            int k = snprintf(urc, sizeof urc, "\r\n+CDSI: \"SR\",%d\r\n", slot + 1);
            emit(m, urc, k);
        } /* <ds>=0: not routed to the TE */
    }
    /* Not idle: the end of the command or of the PDU entry delivers them
     * (process()); a timer already due would only fire again and again. */
    arm(m->report_tfd, m->q_len > 0 && idle(m) && !full ? m->queue[m->q_head].due : 0);
}

static void queue_report(struct modem *m, const struct report *r) {
    if (m->q_len == QUEUE_CAP) {
        dropped_reports++;
        return;
    }
    m->queue[(m->q_head + m->q_len++) % QUEUE_CAP] = *r;
}

/* ------------------------------------------------------------- commands */

static void reset_settings(struct modem *m) {
    m->echo = 1;
    m->cmee = 0;
    m->creg_n = 0;
    m->csms = 0;
    memset(m->cnmi, 0, sizeof m->cnmi);
    m->mem[0] = m->mem[1] = m->mem[2] = SM;
}

static int luhn(const char *digits) {
    int sum = 0, n = (int)strlen(digits);
    for (int i = 0; i < n; i++) {
        int d = digits[n - 1 - i] - '0';
        if (i % 2 == 0) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
        sum += d;
    }
    return (10 - sum % 10) % 10;
}

/* Integer parameters "a,b,c" into v (at most max); -1 for an empty one.
 * Returns how many, or -1 when one is not a number. */
static int int_params(const char *s, int *v, int max) {
    int n = 0;
    while (n < max) {
        while (*s == ' ') s++;
        if (*s == ',' || *s == 0) {
            v[n++] = -1;
        } else {
            char *end;
            long x = strtol(s, &end, 10);
            if (end == s) return -1;
            v[n++] = (int)x;
            s = end;
            while (*s == ' ') s++;
        }
        if (*s == 0) return n;
        if (*s != ',') return -1;
        s++;
    }
    return *s ? -1 : n;
}

/* A quoted memory name, "SM"; returns the rest after it or NULL. */
static const char *mem_param(const char *s, enum mem *out) {
    for (int i = 0; i < 3; i++) {
        char q[8];
        snprintf(q, sizeof q, "\"%s\"", MEM_NAME[i]);
        if (strncmp(s, q, 4) == 0) {
            *out = (enum mem)i;
            return s + 4;
        }
    }
    return NULL;
}

static int used_in(struct modem *m, enum mem mem) {
    int used = 0;
    if (mem == SR)
        for (int i = 0; i < SR_SLOTS; i++) used += m->sr[i].used;
    return used;
}

static enum result cpms(struct modem *m, const char *args) {
    enum mem want[3] = {m->mem[0], m->mem[1], m->mem[2]};
    const char *s = args;
    for (int i = 0; i < 3 && *s; i++) {
        s = mem_param(s, &want[i]);
        if (s == NULL || (i > 0 && want[i] == SR)) return cms(CMS_NOT_SUPPORTED);
        if (*s == ',') s++;
        else if (*s) return cms(CMS_NOT_SUPPORTED);
    }
    memcpy(m->mem, want, sizeof want);
    INFO("+CPMS: %d,%d,%d,%d,%d,%d", used_in(m, m->mem[0]), MEM_SLOTS[m->mem[0]],
         used_in(m, m->mem[1]), MEM_SLOTS[m->mem[1]], used_in(m, m->mem[2]), MEM_SLOTS[m->mem[2]]);
    return A_OK;
}

/* AT+CMGL=<stat> and AT+CMGR=<index> on <mem1>: only "SR" ever holds anything. */
static enum result cmgl(struct modem *m, int stat) {
    if (stat < 0 || stat > 4) return cms(CMS_NOT_SUPPORTED);
    if (m->mem[0] != SR) return A_OK;
    for (int i = 0; i < SR_SLOTS; i++) {
        struct stored *e = &m->sr[i];
        if (!e->used || (stat != 4 && stat != e->read)) continue;
        INFO("+CMGL: %d,%d,,%d", i + 1, e->read, e->tpdu_len);
        add(m, "%s\r\n", e->hex);
        e->read = 1; /* REC UNREAD becomes REC READ once listed */
    }
    return A_OK;
}

static enum result cmgr(struct modem *m, int index) {
    if (index < 1 || index > MEM_SLOTS[m->mem[0]]) return cms(CMS_BAD_INDEX);
    if (m->mem[0] != SR || !m->sr[index - 1].used) return cms(CMS_BAD_INDEX);
    struct stored *e = &m->sr[index - 1];
    INFO("+CMGR: %d,,%d", e->read, e->tpdu_len);
    add(m, "%s\r\n", e->hex);
    e->read = 1;
    return A_OK;
}

static enum result cmgd(struct modem *m, int index, int flag) {
    if (flag < 0) flag = 0;
    if (flag > 4) return cms(CMS_NOT_SUPPORTED);
    if (flag == 0 && (index < 1 || index > MEM_SLOTS[m->mem[0]])) return cms(CMS_BAD_INDEX);
    if (m->mem[0] != SR) return A_OK;
    for (int i = 0; i < SR_SLOTS; i++) {
        /* <delflag> 1: read ones, 2-4: these and more kinds, all of which SR lacks */
        if ((flag == 0 && i == index - 1) || (flag == 1 && m->sr[i].read) || flag >= 2)
            m->sr[i].used = 0;
    }
    return A_OK;
}

static enum result cnmi_set(struct modem *m, const char *args) {
    int v[5];
    int n = int_params(args, v, 5);
    if (n < 1) return cms(CMS_NOT_SUPPORTED);
    int want[5];
    for (int i = 0; i < 5; i++) want[i] = i < n && v[i] >= 0 ? v[i] : m->cnmi[i];
    /* the ranges AT+CNMI=? announces */
    if (want[0] > 2 || want[0] < 0 || want[1] > 1 || want[1] < 0 || want[2] != 0 ||
        want[3] < 0 || want[3] > 2 || (want[3] == 1 && !cds_ok) || want[4] < 0 || want[4] > 1)
        return cms(CMS_NOT_SUPPORTED);
    memcpy(m->cnmi, want, sizeof want);
    return A_OK;
}

/* TP-DA of an SMS-SUBMIT (TS 23.040 9.2.2.2), from the hex PDU with its SCA. */
static int parse_submit(struct modem *m, struct report *r, int *srr) {
    int n = m->pdu_hex;
    if (n % 2 || n < 2) return 0;
    unsigned char o[PDU_HEX_CAP / 2];
    for (int i = 0; i < n / 2; i++) {
        int hi = hexval(m->pdu[2 * i]), lo = hexval(m->pdu[2 * i + 1]);
        if (hi < 0 || lo < 0) return 0;
        o[i] = (unsigned char)(hi << 4 | lo);
    }
    int sca = o[0], start = 1 + sca, total = n / 2;
    if (sca > 11 || total - start != m->pdu_len_expected) return 0;
    const unsigned char *t = o + start;
    int len = total - start;
    if (len < 4 || (t[0] & 0x03) != 0x01) return 0; /* TP-MTI 01: SMS-SUBMIT */
    int digits = t[2], ra_len = 2 + (digits + 1) / 2;
    if (digits > 20 || 2 + ra_len > len) return 0;
    memcpy(r->ra, t + 2, (size_t)ra_len);
    r->ra_len = ra_len;
    *srr = (t[0] & 0x20) != 0;
    return 1;
}

/* One command of a line ("+CMGS=28", "E0", ...); info lines go to m->reply. */
static enum result command(struct modem *m, const char *c, int len) {
    char cmd[LINE_CAP];
    memcpy(cmd, c, (size_t)len);
    cmd[len] = 0;
    if (len == 0) return A_OK;
    if (cmd[0] != '+') { /* basic commands (V.250 5.3.1), the ones a modem driver uses */
        if (strcmp(cmd, "E") == 0 || strcmp(cmd, "E0") == 0) m->echo = 0;
        else if (strcmp(cmd, "E1") == 0) m->echo = 1;
        else if (strcmp(cmd, "V1") == 0 || strcmp(cmd, "V") == 0 || strcmp(cmd, "Q0") == 0 ||
                 strcmp(cmd, "Q") == 0 || strncmp(cmd, "&C", 2) == 0 || strncmp(cmd, "&D", 2) == 0)
            ;
        else if (strcmp(cmd, "Z") == 0 || strcmp(cmd, "Z0") == 0 || strcmp(cmd, "&F") == 0 ||
                 strcmp(cmd, "&F0") == 0)
            reset_settings(m);
        else if (strcmp(cmd, "I") == 0 || strcmp(cmd, "I0") == 0) {
            INFO("Bench\r\nC modem\r\nRevision: 1.0");
        } else
            return A_ERROR;
        return A_OK;
    }
    char *eq = strchr(cmd, '=');
    int query = len > 1 && cmd[len - 1] == '?' && eq == NULL;
    int test = eq != NULL && strcmp(eq, "=?") == 0;
    const char *args = eq != NULL && !test ? eq + 1 : NULL;
    if (eq) *eq = 0;
    if (query) cmd[len - 1] = 0;
    const char *name = cmd + 1;
    int v[3];
    int exec = !query && !test && args == NULL;

    if (!strcmp(name, "CGMI") || !strcmp(name, "GMI")) {
        if (exec) INFO("Bench");
        return exec || test ? A_OK : A_ERROR;
    }
    if (!strcmp(name, "CGMM") || !strcmp(name, "GMM")) {
        if (exec) INFO("C modem");
        return exec || test ? A_OK : A_ERROR;
    }
    if (!strcmp(name, "CGMR") || !strcmp(name, "GMR")) {
        if (exec) INFO("1.0");
        return exec || test ? A_OK : A_ERROR;
    }
    if (!strcmp(name, "CGSN") || !strcmp(name, "GSN")) {
        char imei[24];
        snprintf(imei, sizeof imei, "35000000%06d", m->idx + 1);
        if (exec) INFO("%s%d", imei, luhn(imei));
        return exec || test ? A_OK : A_ERROR;
    }
    if (!strcmp(name, "CIMI")) {
        if (exec) INFO("0010100000%05d", m->idx + 1);
        return exec || test ? A_OK : A_ERROR;
    }
    if (!strcmp(name, "CCID")) {
        char iccid[32];
        snprintf(iccid, sizeof iccid, "89001010000%08d", m->idx + 1);
        if (exec) INFO("+CCID: %s%d", iccid, luhn(iccid));
        return exec || test ? A_OK : A_ERROR;
    }
    if (!strcmp(name, "GCAP")) {
        if (exec) INFO("+GCAP: +CGSM");
        return exec ? A_OK : A_ERROR;
    }
    if (!strcmp(name, "CMEE")) {
        if (query) INFO("+CMEE: %d", m->cmee);
        else if (test) INFO("+CMEE: (0-2)");
        else if (args && int_params(args, v, 1) == 1 && v[0] >= 0 && v[0] <= 2) m->cmee = v[0];
        else if (exec) m->cmee = 0;
        else return cme(50);
        return A_OK;
    }
    if (!strcmp(name, "CPIN")) {
        if (query) INFO("+CPIN: READY");
        else if (args) return cme(3); /* no PIN is asked for */
        else if (!test) return A_ERROR;
        return A_OK;
    }
    if (!strcmp(name, "CFUN")) {
        if (query) INFO("+CFUN: 1");
        else if (test) INFO("+CFUN: (1),(0)");
        else if (!args || int_params(args, v, 2) < 1 || v[0] != 1) return cme(4);
        return A_OK;
    }
    if (!strcmp(name, "CSCS")) {
        if (query) INFO("+CSCS: \"IRA\"");
        else if (test) INFO("+CSCS: (\"IRA\",\"GSM\")");
        else if (!args || (strcmp(args, "\"IRA\"") && strcmp(args, "\"GSM\""))) return cme(4);
        return A_OK;
    }
    if (!strcmp(name, "CSQ")) {
        if (exec) INFO("+CSQ: 20,99");
        else if (test) INFO("+CSQ: (0-31,99),(0-7,99)");
        else return A_ERROR;
        return A_OK;
    }
    if (!strcmp(name, "CREG")) {
        if (query && m->creg_n == 2) INFO("+CREG: 2,1,\"00C3\",\"A13F\"");
        else if (query) INFO("+CREG: %d,1", m->creg_n);
        else if (test) INFO("+CREG: (0-2)");
        else if (args && int_params(args, v, 1) == 1 && v[0] >= 0 && v[0] <= 2) m->creg_n = v[0];
        else return cme(50);
        return A_OK;
    }
    if (!strcmp(name, "COPS")) {
        if (query) INFO("+COPS: 0,0,\"Bench Network\",0");
        else if (test) INFO("+COPS: (2,\"Bench Network\",\"Bench\",\"00101\",0),,(0-4),(0-2)");
        else if (args && int_params(args, v, 1) >= 1 && v[0] == 0) ;
        else return cme(3);
        return A_OK;
    }
    if (!strcmp(name, "CNUM")) {
        if (exec) INFO("+CNUM: \"\",\"+4477009%05d\",145", 1 + m->idx);
        return exec || test ? A_OK : A_ERROR;
    }
    if (!strcmp(name, "CSCA")) {
        if (query) INFO("+CSCA: \"%s\",%d", m->smsc, m->smsc_toa);
        else if (test) ;
        else if (args && args[0] == '"') {
            const char *end = strchr(args + 1, '"');
            int n = end ? (int)(end - args - 1) : -1;
            if (n < 1 || n >= (int)sizeof m->smsc) return cms(CMS_NOT_SUPPORTED);
            memcpy(m->smsc, args + 1, (size_t)n);
            m->smsc[n] = 0;
            m->smsc_toa = m->smsc[0] == '+' ? 145 : 129;
            if (end[1] == ',') m->smsc_toa = atoi(end + 2);
        } else return cms(CMS_NOT_SUPPORTED);
        return A_OK;
    }
    if (!strcmp(name, "CMGF")) { /* PDU mode only */
        if (query) INFO("+CMGF: 0");
        else if (test) INFO("+CMGF: (0)");
        else if (!(args && int_params(args, v, 1) == 1 && v[0] == 0)) return cms(CMS_NOT_SUPPORTED);
        return A_OK;
    }
    if (!strcmp(name, "CSMS")) { /* phase 2 and phase 2+ (acknowledged +CDS) */
        if (query) INFO("+CSMS: %d,1,1,1", m->csms);
        else if (test) INFO("+CSMS: (0,1)");
        else if (args && int_params(args, v, 1) == 1 && (v[0] == 0 || v[0] == 1)) {
            m->csms = v[0];
            INFO("+CSMS: 1,1,1");
        } else return cms(CMS_NOT_SUPPORTED);
        return A_OK;
    }
    if (!strcmp(name, "CNMI")) {
        if (query) INFO("+CNMI: %d,%d,%d,%d,%d", m->cnmi[0], m->cnmi[1], m->cnmi[2], m->cnmi[3],
                        m->cnmi[4]);
        else if (test) INFO("+CNMI: (0-2),(0,1),(0),%s,(0,1)", cds_ok ? "(0-2)" : "(0,2)");
        else if (args) return cnmi_set(m, args);
        else return A_ERROR;
        return A_OK;
    }
    if (!strcmp(name, "CPMS")) {
        if (query)
            INFO("+CPMS: \"%s\",%d,%d,\"%s\",%d,%d,\"%s\",%d,%d", MEM_NAME[m->mem[0]],
                 used_in(m, m->mem[0]), MEM_SLOTS[m->mem[0]], MEM_NAME[m->mem[1]],
                 used_in(m, m->mem[1]), MEM_SLOTS[m->mem[1]], MEM_NAME[m->mem[2]],
                 used_in(m, m->mem[2]), MEM_SLOTS[m->mem[2]]);
        else if (test) INFO("+CPMS: (\"SM\",\"ME\",\"SR\"),(\"SM\",\"ME\"),(\"SM\",\"ME\")");
        else if (args) return cpms(m, args);
        else return A_ERROR;
        return A_OK;
    }
    if (!strcmp(name, "CMGL")) {
        if (test) {
            INFO("+CMGL: (0-4)");
            return A_OK;
        }
        if (args && int_params(args, v, 1) == 1) return cmgl(m, v[0]);
        if (exec) return cmgl(m, 0); /* <stat> defaults to "received unread" */
        return cms(CMS_NOT_SUPPORTED);
    }
    if (!strcmp(name, "CMGR")) {
        if (test) return A_OK;
        if (args && int_params(args, v, 1) == 1) return cmgr(m, v[0]);
        return cms(CMS_NOT_SUPPORTED);
    }
    if (!strcmp(name, "CMGD")) {
        if (test) {
            INFO("+CMGD: (1-%d),(0-4)", MEM_SLOTS[m->mem[0]]);
            return A_OK;
        }
        int k = args ? int_params(args, v, 2) : -1;
        if (k >= 1) return cmgd(m, v[0], k == 2 ? v[1] : 0);
        return cms(CMS_NOT_SUPPORTED);
    }
    if (!strcmp(name, "CNMA")) {
        if (test) {
            INFO("+CNMA: (0-2)");
            return A_OK;
        }
        if (m->csms != 1 || m->cnma_due == 0) return cms(CMS_NO_CNMA);
        m->cnma_due--;
        return A_OK;
    }
    if (!strcmp(name, "CMGS")) {
        if (test) return A_OK;
        if (!(args && int_params(args, v, 1) == 1 && v[0] >= 1 && v[0] <= 176))
            return cms(CMS_BAD_PDU);
        m->pdu_len_expected = v[0];
        return A_PROMPT;
    }
    return A_ERROR;
}

/* The answer is ready: now, or at its due time. */
static void send_reply(struct modem *m);

static void answer(struct modem *m, double heard, double delay) {
    if (delay > 0) {
        m->busy = 1;
        m->timed = 1;
        m->due = heard + delay;
        arm(m->reply_tfd, m->due);
    } else {
        m->timed = 0;
        send_reply(m);
    }
}

static void final(struct modem *m, enum result r) {
    switch (r) {
    case A_OK: add(m, "\r\nOK\r\n"); break;
    case A_ERROR: add(m, "\r\nERROR\r\n"); break;
    case A_CMS: add(m, "\r\n+CMS ERROR: %d\r\n", err_code); break;
    case A_CME:
        if (m->cmee == 0) add(m, "\r\nERROR\r\n");
        else if (m->cmee == 1) add(m, "\r\n+CME ERROR: %d\r\n", err_code);
        else add(m, "\r\n+CME ERROR: %s\r\n", cme_text(err_code));
        break;
    case A_PROMPT: add(m, "\r\n> "); break;
    }
}

/* A command line (after "AT"): basic and extended commands, ';' between
 * extended ones (V.250 5.3); stops at the first failure. */
static void command_line(struct modem *m, double heard) {
    char *s = m->line + 2;
    int n = m->line_len - 2;
    m->reply_len = 0;
    m->reply_is_send = m->reply_enters_pdu = m->reply_has_report = 0;
    if (m->have_final) { /* the daemon's turn-around: a send's result to the next AT+CMGS */
        m->have_final = 0;
        if (n >= 6 && strncmp(s, "+CMGS=", 6) == 0) keep(&turn, &n_turn, &cap_turn, heard - m->final_at);
    }
    enum result r = A_OK;
    int i = 0;
    if (m->line_over) r = A_ERROR;
    while (r == A_OK && i < n) {
        int start = i;
        if (s[i] == '+') {
            int quoted = 0;
            while (i < n && (quoted || s[i] != ';')) {
                if (s[i] == '"') quoted = !quoted;
                i++;
            }
            r = command(m, s + start, i - start);
            if (i < n) i++; /* the ';' */
        } else if (s[i] == ';' || s[i] == ' ') {
            i++;
        } else {
            i++; /* a letter, or & and a letter, then digits */
            if (s[start] == '&' && i < n) i++;
            while (i < n && isdigit((unsigned char)s[i])) i++;
            r = command(m, s + start, i - start);
        }
    }
    if (r == A_PROMPT) {
        m->reply_enters_pdu = 1;
        m->pdu_hex = m->pdu_bad = 0;
    }
    final(m, r);
    m->line_len = m->line_over = 0;
    answer(m, heard, latency_s);
}

/* Ctrl-Z: the PDU is complete; the network's answer comes after the send time. */
static void pdu_done(struct modem *m, double heard) {
    m->in_pdu = 0;
    m->reply_len = 0;
    m->reply_is_send = m->reply_enters_pdu = m->reply_has_report = 0;
    int srr = 0;
    if (m->pdu_bad || !parse_submit(m, &m->reply_report, &srr)) {
        final(m, cms(CMS_BAD_PDU));
        answer(m, heard, latency_s);
        return;
    }
    m->reply_report.mr = m->mr;
    m->reply_has_report = reports_on && srr;
    m->reply_is_send = 1;
    add(m, "\r\n+CMGS: %d\r\n\r\nOK\r\n", m->mr);
    m->mr = (m->mr + 1) & 0xff;
    answer(m, heard, latency_s + send_s);
}

static void process(struct modem *m);

static void send_reply(struct modem *m) {
    double t = now();
    if (m->timed) keep(&late, &n_late, &cap_late, t - m->due);
    emit(m, m->reply, m->reply_len);
    m->busy = 0;
    if (m->reply_enters_pdu) m->in_pdu = 1;
    if (m->reply_is_send) {
        m->final_at = t;
        m->have_final = 1;
        if (m->reply_has_report) {
            m->reply_report.due = t + report_delay_s;
            queue_report(m, &m->reply_report);
        }
    }
    m->reply_is_send = m->reply_enters_pdu = m->reply_has_report = 0;
}

/* Walk the input held so far until an answer has to wait. */
static void process(struct modem *m) {
    int i = 0;
    double heard = now();
    while (i < m->in_len && !m->busy) {
        unsigned char c = m->in[i++];
        if (m->in_pdu) {
            if (m->echo && c != ESC) emit(m, (char *)&c, 1);
            if (c == CTRL_Z) {
                pdu_done(m, heard);
            } else if (c == ESC) { /* TS 27.005 3.5.1: sending cancelled */
                m->in_pdu = 0;
                emit(m, "\r\nOK\r\n", 6);
            } else if (c == '\r' || c == '\n' || c == ' ') {
            } else if (hexval(c) < 0 || m->pdu_hex == PDU_HEX_CAP) {
                m->pdu_bad = 1;
            } else {
                m->pdu[m->pdu_hex++] = (char)c;
            }
            continue;
        }
        if (c == ESC || c == '\n') continue;
        if (m->echo) emit(m, (char *)&c, 1);
        if (c == 8) { /* S5, backspace */
            if (m->line_len > 0) m->line_len--;
            continue;
        }
        if (c == '\r') { /* S3 ends the line; without "AT" it is nothing */
            if (m->line_len >= 2) command_line(m, heard);
            m->line_len = m->line_over = 0;
            continue;
        }
        if (m->line_len == 0 && toupper(c) != 'A') continue; /* waiting for the "AT" prefix */
        if (m->line_len == 1 && toupper(c) != 'T') {
            m->line_len = toupper(c) == 'A';
            continue;
        }
        if (m->line_len == LINE_CAP - 1) {
            m->line_over = 1;
            continue;
        }
        /* command names in upper case, strings as given */
        int quoted = 0;
        for (int k = 2; k < m->line_len; k++) quoted ^= m->line[k] == '"';
        m->line[m->line_len++] = (char)(quoted ? c : toupper(c));
    }
    memmove(m->in, m->in + i, (size_t)(m->in_len - i));
    m->in_len -= i;
    deliver_reports(m);
}

/* ------------------------------------------------------------- the loop */

static void open_modem(struct modem *m, int i) {
    memset(m, 0, sizeof *m);
    m->idx = i;
    if (openpty(&m->master, &m->slave, NULL, NULL, NULL) != 0) {
        perror("openpty");
        exit(1);
    }
    /* raw on both sides: no echo or CR translation by the line discipline */
    struct termios t;
    tcgetattr(m->slave, &t);
    cfmakeraw(&t);
    tcsetattr(m->slave, TCSANOW, &t);
    fcntl(m->master, F_SETFL, O_NONBLOCK);
    snprintf(m->slave_name, sizeof m->slave_name, "%s", ttyname(m->slave));
    m->reply_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    m->report_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (m->reply_tfd < 0 || m->report_tfd < 0) {
        perror("timerfd_create");
        exit(1);
    }
    reset_settings(m);
    strcpy(m->smsc, "+447785016005");
    m->smsc_toa = 145;
    if (link_prefix != NULL) {
        if (n_modems == 1) snprintf(m->link, sizeof m->link, "%s", link_prefix);
        else snprintf(m->link, sizeof m->link, "%s%d", link_prefix, i);
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.%d.tmp", m->link, (int)getpid());
        unlink(tmp);
        if (symlink(m->slave_name, tmp) != 0 || rename(tmp, m->link) != 0) {
            perror(m->link);
            exit(1);
        }
    }
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = (uint64_t)i << 2};
    epoll_ctl(ep, EPOLL_CTL_ADD, m->master, &e);
    e.data.u64 = (uint64_t)i << 2 | 1;
    epoll_ctl(ep, EPOLL_CTL_ADD, m->reply_tfd, &e);
    e.data.u64 = (uint64_t)i << 2 | 2;
    epoll_ctl(ep, EPOLL_CTL_ADD, m->report_tfd, &e);
}

static void write_timing(void) {
    if (timing_path == NULL) return;
    FILE *f = fopen(timing_path, "w");
    if (f == NULL) {
        perror(timing_path);
        return;
    }
    fprintf(f, "{\"late\": [");
    for (size_t i = 0; i < n_late; i++) fprintf(f, "%s%.7f", i ? "," : "", late[i]);
    fprintf(f, "], \"turnaround\": [");
    for (size_t i = 0; i < n_turn; i++) fprintf(f, "%s%.7f", i ? "," : "", turn[i]);
    fprintf(f, "], \"dropped_output_bytes\": %ld, \"dropped_reports\": %ld}\n", dropped_out,
            dropped_reports);
    fclose(f);
}

static void usage(const char *me) {
    fprintf(stderr,
            "usage: %s [-n MODEMS] [-l LINK] [-L LATENCY_MS] [-s SEND_MS] [-r] [-c] "
            "[-d REPORT_DELAY_MS] [-t TIMING.json]\n",
            me);
    exit(2);
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "n:l:L:s:rcd:t:")) != -1) {
        switch (opt) {
        case 'n': n_modems = atoi(optarg); break;
        case 'l': link_prefix = optarg; break;
        case 'L': latency_s = atof(optarg) / 1000; break;
        case 's': send_s = atof(optarg) / 1000; break;
        case 'r': reports_on = 1; break;
        case 'c': cds_ok = 1; break;
        case 'd': report_delay_s = atof(optarg) / 1000; break;
        case 't': timing_path = optarg; break;
        default: usage(argv[0]);
        }
    }
    if (optind != argc || n_modems < 1 || n_modems > MAX_MODEMS || latency_s < 0 || send_s < 0 ||
        report_delay_s < 0)
        usage(argv[0]);
    signal(SIGPIPE, SIG_IGN);
    ep = epoll_create1(EPOLL_CLOEXEC);
    modems = calloc((size_t)n_modems, sizeof *modems);
    if (modems == NULL) {
        perror("calloc");
        return 1;
    }
    for (int i = 0; i < n_modems; i++) open_modem(&modems[i], i);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &e); /* standard input: its end stops us */
    for (int i = 0; i < n_modems; i++)
        printf("modem %d %s %s\n", i, modems[i].slave_name, modems[i].link);
    printf("READY\n");
    fflush(stdout);

    struct epoll_event ev[64];
    for (;;) {
        int k = epoll_wait(ep, ev, 64, -1);
        if (k < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        for (int j = 0; j < k; j++) {
            if (ev[j].data.u64 == UINT64_MAX) {
                char b[256];
                if (read(0, b, sizeof b) > 0) continue;
                write_timing();
                for (int i = 0; i < n_modems; i++)
                    if (modems[i].link[0]) unlink(modems[i].link);
                return 0;
            }
            struct modem *m = &modems[ev[j].data.u64 >> 2];
            int kind = (int)(ev[j].data.u64 & 3);
            uint64_t ticks;
            if (kind == 1) {
                if (read(m->reply_tfd, &ticks, sizeof ticks) == sizeof ticks && m->busy) {
                    send_reply(m);
                    process(m);
                }
            } else if (kind == 2) {
                if (read(m->report_tfd, &ticks, sizeof ticks) == sizeof ticks) deliver_reports(m);
            } else {
                if (ev[j].events & EPOLLOUT) flush_out(m);
                if (ev[j].events & EPOLLIN) {
                    int room = IN_CAP - m->in_len;
                    if (room == 0) { /* a driver that never waits for answers */
                        m->in_len = 0;
                        room = IN_CAP;
                    }
                    ssize_t r = read(m->master, m->in + m->in_len, (size_t)room);
                    if (r > 0) {
                        m->in_len += (int)r;
                        process(m);
                    }
                }
            }
        }
    }
}
