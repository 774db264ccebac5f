/* The floor of the modem benchmark on this machine: the AT+CMGS exchange of
 * bench/modem_bench.py over real ptys, done by a C "driver" and a C "modem"
 * that parse nothing and keep no state beyond the last four bytes.
 *
 * Why it exists: issue 2 asks that 16 modems reach 12 x one modem's rate at
 * 0 ms simulator latency.  With one modem a send costs its round trips'
 * latency; with sixteen the machine's cores are the limit, so the ratio is at
 * most (one modem's time per send) / (CPU per send / cores).  Every driver
 * does at least this program's work per send (two writes, two reads, two
 * wake-ups on each side, and the kernel's pty hand-over, which runs in kernel
 * workers and is counted by neither process), so this shows what the machine
 * itself allows.
 *
 *   cc -O2 -o pty_floor bench/pty_floor.c -lutil
 *   ./pty_floor MODEMS SENDS_PER_MODEM
 * prints "MODEMS SENDS_PER_SECOND DRIVER_US MODEM_US MACHINE_US BUSY": CPU
 * microseconds per send in the driver, in the modem, and on the whole machine
 * (all cores, kernel workers included, from /proc/stat), and how busy the
 * machine's cores were (0..1).
 *
 *   ./pty_floor serve MODEMS REPORTS
 * is the modem alone, for bench/python_floor.py's Python driver: it opens
 * MODEMS ptys, prints each one's path (the side a driver opens) on a line,
 * and answers until its standard input closes, then prints its own CPU
 * seconds.  It answers "> " to AT+CMGS=<n>, "+CMGS: 7" and OK to the PDU
 * and Ctrl-Z, then (REPORTS=1) a "+CDS" status report in a second write, as
 * a modem with AT+CNMI=...,1 routes it; OK to AT+CNMA and any other command.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_MODEMS 64

/* The one-part SMS-SUBMIT modem_bench.py sends ("Benchmark message" to
 * +447700900123, TPDU 28 octets), then Ctrl-Z. */
static const char PDU[] = "0001000C91447700091032000011C2B27B8C6E87E56B50BB3C9F87CF65\x1a";
static const char CMD[] = "AT+CMGS=28\r";
static const char PROMPT[] = "\r\n> ";
static const char DONE[] = "\r\n+CMGS: 7\r\n\r\nOK\r\n";
static const char OK[] = "\r\nOK\r\n";
/* The status report of that SMS (reference 7, delivered), as smsd's simulator
 * encodes it (pdu.encode_status_report), TPDU 25 octets after the SMSC. */
static const char CDS[] =
    "\r\n+CDS: 25\r\n079144775810065006070C91447700091032622170410000006221704100000000\r\n";

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu(int who) {
    struct rusage r;
    getrusage(who, &r);
    return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
           (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

/* Busy and total jiffies of all cores together, from the first line of /proc/stat. */
static void machine(double *busy, double *total) {
    unsigned long long v[10] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL || fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                            &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) < 8) {
        *busy = *total = 0;
    } else {
        /* user nice system idle iowait irq softirq steal (guest time is inside user) */
        *total = (double)(v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]);
        *busy = *total - (double)(v[3] + v[4]);
    }
    if (f != NULL) fclose(f);
}

static void make_raw(int fd) {
    struct termios t;
    tcgetattr(fd, &t);
    cfmakeraw(&t);
    tcsetattr(fd, TCSANOW, &t);
    fcntl(fd, F_SETFL, O_NONBLOCK);
}

/* Keeps the last four bytes seen on a port: enough to spot "> " and "OK\r\n"
 * however the kernel cuts the stream into reads. */
static void remember(char tail[4], const char *buf, ssize_t n) {
    for (ssize_t i = 0; i < n; i++) {
        memmove(tail, tail + 1, 3);
        tail[3] = buf[i];
    }
}

static int watch(int *fds, int n) {
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (unsigned)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e);
    }
    return ep;
}

/* The modem side: "\r\n> " after a command line, the result after Ctrl-Z. */
static void modem(int *fds, int n, int report_fd) {
    int ep = watch(fds, n);
    struct epoll_event ev[MAX_MODEMS];
    char buf[512];
    double c0 = cpu(RUSAGE_SELF);
    for (;;) {
        int k = epoll_wait(ep, ev, MAX_MODEMS, -1);
        for (int j = 0; j < k; j++) {
            int fd = fds[ev[j].data.u32];
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) continue;
            char last = buf[r - 1];
            if (last == '\r') {
                if (write(fd, PROMPT, sizeof PROMPT - 1) < 0) _exit(1);
            } else if (last == 0x1a) {
                if (write(fd, DONE, sizeof DONE - 1) < 0) _exit(1);
            } else if (last == 'Q') {
                double used = cpu(RUSAGE_SELF) - c0;
                if (write(report_fd, &used, sizeof used) < 0) _exit(1);
                _exit(0);
            }
        }
    }
}

/* Serve mode's modem: a line's first bytes tell AT+CMGS from AT+CNMA. */
static void serve(int n, int reports) {
    int masters[MAX_MODEMS + 1], slaves[MAX_MODEMS], got[MAX_MODEMS];
    char head[MAX_MODEMS][8];
    for (int i = 0; i < n; i++) {
        /* The slave stays open here too: without it the master reads EIO (and
         * epoll reports a hang-up) whenever no driver has the port open. */
        if (openpty(&masters[i], &slaves[i], NULL, NULL, NULL) != 0) {
            perror("openpty");
            exit(1);
        }
        make_raw(masters[i]);
        make_raw(slaves[i]);
        printf("%s\n", ttyname(slaves[i]));
        got[i] = 0;
    }
    fflush(stdout);
    masters[n] = 0; /* standard input: its end stops the modem */
    int ep = watch(masters, n + 1);
    struct epoll_event ev[MAX_MODEMS + 1];
    char buf[512];
    double c0 = cpu(RUSAGE_SELF);
    for (;;) {
        int k = epoll_wait(ep, ev, MAX_MODEMS + 1, -1);
        for (int j = 0; j < k; j++) {
            int i = (int)ev[j].data.u32;
            ssize_t r = read(masters[i], buf, sizeof buf);
            if (i == n) {
                if (r > 0) continue;
                printf("%.6f\n", cpu(RUSAGE_SELF) - c0);
                exit(0);
            }
            for (ssize_t b = 0; b < r; b++) {
                char c = buf[b];
                if (c == '\r' || c == 0x1a) {
                    const char *answer = c == 0x1a ? DONE
                                         : got[i] >= 7 && memcmp(head[i], "AT+CMGS", 7) == 0 ? PROMPT
                                                                                          : OK;
                    if (write(masters[i], answer, strlen(answer)) < 0) exit(1);
                    if (c == 0x1a && reports && write(masters[i], CDS, sizeof CDS - 1) < 0) exit(1);
                    got[i] = 0;
                } else if (got[i] < 8) {
                    head[i][got[i]++] = c;
                }
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "serve") == 0) {
        int n = atoi(argv[2]);
        if (n < 1 || n > MAX_MODEMS) {
            fprintf(stderr, "MODEMS must be 1..%d\n", MAX_MODEMS);
            return 2;
        }
        serve(n, atoi(argv[3]) == 1);
    }
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEMS SENDS_PER_MODEM\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[1]), sends = atoi(argv[2]);
    if (n < 1 || n > MAX_MODEMS || sends < 1) {
        fprintf(stderr, "MODEMS must be 1..%d, SENDS_PER_MODEM >= 1\n", MAX_MODEMS);
        return 2;
    }
    int ours[MAX_MODEMS], theirs[MAX_MODEMS], report[2];
    for (int i = 0; i < n; i++) {
        if (openpty(&theirs[i], &ours[i], NULL, NULL, NULL) != 0) {
            perror("openpty");
            return 1;
        }
        make_raw(theirs[i]);
        make_raw(ours[i]);
    }
    if (pipe(report) != 0) {
        perror("pipe");
        return 1;
    }
    pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < n; i++) close(ours[i]);
        modem(theirs, n, report[1]);
    }
    for (int i = 0; i < n; i++) close(theirs[i]);

    int ep = watch(ours, n);
    int left[MAX_MODEMS], prompted[MAX_MODEMS];
    char tail[MAX_MODEMS][4];
    memset(tail, 0, sizeof tail);
    struct epoll_event ev[MAX_MODEMS];
    char buf[512];
    usleep(100000); /* let the child reach epoll_wait */

    double busy0, total0, busy1, total1;
    machine(&busy0, &total0);
    double w0 = seconds(), c0 = cpu(RUSAGE_SELF);
    int active = n;
    for (int i = 0; i < n; i++) {
        left[i] = sends;
        prompted[i] = 0;
        if (write(ours[i], CMD, sizeof CMD - 1) < 0) return 1;
    }
    while (active > 0) {
        int k = epoll_wait(ep, ev, MAX_MODEMS, -1);
        for (int j = 0; j < k; j++) {
            int i = (int)ev[j].data.u32;
            ssize_t r = read(ours[i], buf, sizeof buf);
            if (r <= 0) continue;
            remember(tail[i], buf, r);
            if (!prompted[i] && memcmp(tail[i] + 2, "> ", 2) == 0) {
                prompted[i] = 1;
                memset(tail[i], 0, 4);
                if (write(ours[i], PDU, sizeof PDU - 1) < 0) return 1;
            } else if (prompted[i] && memcmp(tail[i], "OK\r\n", 4) == 0) {
                prompted[i] = 0;
                memset(tail[i], 0, 4);
                if (--left[i] == 0)
                    active--;
                else if (write(ours[i], CMD, sizeof CMD - 1) < 0)
                    return 1;
            }
        }
    }
    double wall = seconds() - w0, used = cpu(RUSAGE_SELF) - c0, modem_cpu = 0;
    machine(&busy1, &total1);
    double tick = (double)sysconf(_SC_CLK_TCK);
    double busy_s = (busy1 - busy0) / tick;
    double share = total1 > total0 ? (busy1 - busy0) / (total1 - total0) : 0;
    if (write(ours[0], "Q", 1) < 0) return 1;
    if (read(report[0], &modem_cpu, sizeof modem_cpu) != sizeof modem_cpu) modem_cpu = -1;
    waitpid(child, NULL, 0);
    double total = (double)n * sends;
    printf("%d %.0f %.2f %.2f %.2f %.2f\n", n, total / wall, used * 1e6 / total,
           modem_cpu * 1e6 / total, busy_s * 1e6 / total, share);
    return 0;
}
