/*
 * burgers2d.c - example external solver for sciml-zoo (see solvers/external.py).
 *
 * 2D viscous Burgers equation on the periodic square [0, L)^2,
 *     du/dt + u du/dx + v du/dy = nu lap(u),   (same for v),
 * first-order upwind advection, 5-point diffusion, SSP-RK2 (Heun) sub-steps.
 * One request advances the state by --dt; the sub-step count is fixed at the
 * start of each request from the state (CFL and diffusion limit), so the
 * result depends only on the request: restarts and batching are safe.
 *
 * State: 2 channels (u, v), float64, layout [c][y][x]; 1 parameter (nu >= 0).
 *
 * Protocol (little-endian), one request -> one reply:
 *   header  = "SZIO", uint32 version=1, uint32 C, H, W, P      (24 bytes)
 *   request = header + C*H*W float64 state + P float64 params
 *   reply   = header (P = 0) + C*H*W float64 next state
 * Worker mode (default): requests on stdin, replies on stdout, until EOF.
 * File mode: burgers2d [options] --file IN OUT (IN = one request, OUT = reply).
 * Errors: a message on stderr and a non-zero exit status.
 *
 * Build: cc -O2 -o burgers2d burgers2d.c -lm   (solvers/c_build.py does this)
 * Options: --dt DT (0.05) --length L (2*pi) --cfl CFL (0.8)
 *          --fault KIND-after=N   test hook: after N answered requests,
 *          KIND = crash (abort), hang, exit (status 3), garbage, nan.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct { char magic[4]; uint32_t version, c, h, w, p; } header_t;

static double g_dt = 0.05, g_length = 6.283185307179586, g_cfl = 0.8;
static char g_fault[16] = "";
static long g_fault_after = -1;

static void die(const char *msg) { fprintf(stderr, "burgers2d: %s\n", msg); exit(2); }

/* time derivative of both fields: upwind advection + central diffusion */
static void rhs(const double *s, double *ds, int h, int w, double dx, double dy, double nu) {
    const double *u = s, *v = s + (size_t)h * w;
    for (int f = 0; f < 2; f++) {
        const double *q = s + (size_t)f * h * w;
        double *dq = ds + (size_t)f * h * w;
        for (int j = 0; j < h; j++) {
            int jm = (j + h - 1) % h, jp = (j + 1) % h;
            for (int i = 0; i < w; i++) {
                int im = (i + w - 1) % w, ip = (i + 1) % w, k = j * w + i;
                double uc = u[k], vc = v[k], qc = q[k];
                double qx = uc > 0 ? (qc - q[j * w + im]) / dx : (q[j * w + ip] - qc) / dx;
                double qy = vc > 0 ? (qc - q[jm * w + i]) / dy : (q[jp * w + i] - qc) / dy;
                double lap = (q[j * w + ip] + q[j * w + im] - 2 * qc) / (dx * dx)
                           + (q[jp * w + i] + q[jm * w + i] - 2 * qc) / (dy * dy);
                dq[k] = -uc * qx - vc * qy + nu * lap;
            }
        }
    }
}

/* advance s (2*h*w) by g_dt with nsub equal SSP-RK2 sub-steps */
static void advance(double *s, int h, int w, double nu) {
    size_t n = (size_t)2 * h * w;
    double dx = g_length / w, dy = g_length / h, rate = 0;
    for (size_t k = 0; k < n / 2; k++) {
        double r = fabs(s[k]) / dx + fabs(s[k + n / 2]) / dy;
        if (r > rate) rate = r;
    }
    rate += 2 * nu * (1 / (dx * dx) + 1 / (dy * dy));
    long nsub = (long)ceil(g_dt * rate / g_cfl);
    if (nsub < 1) nsub = 1;
    double hs = g_dt / nsub;
    double *k1 = malloc(n * sizeof *k1), *s1 = malloc(n * sizeof *s1);
    if (!k1 || !s1) die("out of memory");
    for (long it = 0; it < nsub; it++) {
        rhs(s, k1, h, w, dx, dy, nu);
        for (size_t k = 0; k < n; k++) s1[k] = s[k] + hs * k1[k];
        rhs(s1, k1, h, w, dx, dy, nu);
        for (size_t k = 0; k < n; k++) s[k] = 0.5 * (s[k] + s1[k] + hs * k1[k]);
    }
    free(k1);
    free(s1);
}

/* answer one request; returns 0 on a clean EOF before the header */
static int handle(FILE *in, FILE *out, long count) {
    header_t hd;
    size_t got = fread(&hd, 1, sizeof hd, in);
    if (got == 0 && feof(in)) return 0;
    if (got != sizeof hd) die("truncated request header");
    if (memcmp(hd.magic, "SZIO", 4) != 0 || hd.version != 1) die("bad magic or version in request");
    if (hd.c != 2 || hd.p != 1) {
        fprintf(stderr, "burgers2d: expected C=2 channels (u, v) and P=1 parameter (viscosity), "
                        "got C=%u P=%u\n", hd.c, hd.p);
        exit(2);
    }
    size_t n = (size_t)hd.c * hd.h * hd.w;
    double *buf = malloc((n + hd.p) * sizeof *buf);
    if (!buf) die("out of memory");
    if (fread(buf, sizeof *buf, n + hd.p, in) != n + hd.p) die("truncated request payload");
    double nu = buf[n];
    if (!(nu >= 0)) die("viscosity must be >= 0");

    if (g_fault_after >= 0 && count >= g_fault_after) {
        if (!strcmp(g_fault, "crash")) { fprintf(stderr, "burgers2d: injected crash\n"); abort(); }
        if (!strcmp(g_fault, "hang")) { fprintf(stderr, "burgers2d: injected hang\n"); for (;;) sleep(1000); }
        if (!strcmp(g_fault, "exit")) {
            fprintf(stderr, "burgers2d: injected failure on request %ld\n", count + 1);
            exit(3);
        }
        if (!strcmp(g_fault, "garbage") && count == g_fault_after) {
            fputs("this is not a reply, just some text printed by mistake\n", out);
            fflush(out);
            free(buf);
            return 1;
        }
    }
    advance(buf, (int)hd.h, (int)hd.w, nu);
    if (!strcmp(g_fault, "nan") && count == g_fault_after) buf[0] = NAN;
    hd.p = 0;
    if (fwrite(&hd, sizeof hd, 1, out) != 1 || fwrite(buf, sizeof *buf, n, out) != n) die("write failed");
    fflush(out);
    free(buf);
    return 1;
}

int main(int argc, char **argv) {
    const uint32_t one = 1;
    if (*(const char *)&one != 1) die("this example assumes a little-endian machine");
    const char *in_path = NULL, *out_path = NULL;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--dt") && a + 1 < argc) g_dt = atof(argv[++a]);
        else if (!strcmp(argv[a], "--length") && a + 1 < argc) g_length = atof(argv[++a]);
        else if (!strcmp(argv[a], "--cfl") && a + 1 < argc) g_cfl = atof(argv[++a]);
        else if (!strcmp(argv[a], "--fault") && a + 1 < argc) {
            if (sscanf(argv[++a], "%15[a-z]-after=%ld", g_fault, &g_fault_after) != 2)
                die("--fault expects KIND-after=N, e.g. crash-after=3");
        } else if (!strcmp(argv[a], "--file") && a + 2 < argc) {
            in_path = argv[++a];
            out_path = argv[++a];
        } else {
            fprintf(stderr, "usage: burgers2d [--dt DT] [--length L] [--cfl C] "
                            "[--fault KIND-after=N] [--file IN OUT]\n");
            return 2;
        }
    }
    if (!(g_dt > 0 && g_length > 0 && g_cfl > 0)) die("--dt, --length and --cfl must be > 0");
    if (in_path) {
        FILE *in = fopen(in_path, "rb"), *out;
        if (!in) die("cannot open the input file");
        if (!(out = fopen(out_path, "wb"))) die("cannot open the output file");
        if (!handle(in, out, 0)) die("empty input file");
        fclose(in);
        return fclose(out) == 0 ? 0 : 2;
    }
    for (long count = 0; handle(stdin, stdout, count); count++) {}
    return 0;
}
