/* SPDX-License-Identifier: MIT */
/*
 * shmbusd: arguments, configuration, the control socket (or one passed by
 * systemd socket activation), signals, and the event loop.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

#include "broker.h"
#include "config.h"
#include "handover.h"
#include "log.h"
#include "notify.h"
#include "shmdir.h"
#include "util.h"
#include "wire.h"

/* Signals the daemon handles: SIGTERM and SIGINT stop it, SIGHUP reloads. */
#define N_SIGNALS 3

struct daemon {
        /* What the command line says. */
        const char *config_path;
        struct config cmdline; /* what the command line overrides */
        bool have_socket, have_dir;
        uint32_t unblock_ms;
        int log_level;   /* --log-level, or -1 */
        bool check_only; /* --check-config */
        /* What is running. */
        struct config cfg;
        int shm_dirfd;  /* the shm directory (shmdir.h), until the broker takes it */
        int listen_fd;  /* -1 until the socket is set up */
        bool activated; /* systemd passed listen_fd (LISTEN_PID/LISTEN_FDS): its to remove */
        char served[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* the socket's path */
        dev_t sock_dev; /* the socket file this daemon made, removed at exit if still there */
        ino_t sock_ino;
        struct event_base *base;
        struct broker *broker;
        struct event *sigs[N_SIGNALS];
        struct event *watchdog;
};

static void usage(FILE *f) {
        fprintf(f,
                "Usage: shmbusd [OPTIONS]\n\n"
                "The shmbus control daemon: creates channels in the shm directory and hands\n"
                "their file descriptors to permitted clients over a Unix socket.\n\n"
                "  -s, --socket PATH        control socket (default %s)\n"
                "  -d, --shm-dir DIR        channel directory (default %s)\n"
                "  -c, --config FILE        JSON configuration (optional; see shmbusd(8))\n"
                "  -u, --unblock-timeout MS pad over a claim of a dead publisher once it has kept\n"
                "                           subscribers waiting this long (default %u)\n"
                "      --log-level LEVEL    err, warning, notice, info (default) or debug\n"
                "      --check-config       validate the configuration and exit\n"
                "  -h, --help               this text\n"
                "  -V, --version            print the version\n",
                SHMBUS_DEFAULT_SOCKET, WIRE_DEFAULT_SHM_DIR, CONFIG_DEFAULT_UNBLOCK_TIMEOUT_MS);
}

/* Make the directory for the socket or channels if it is missing. */
static int ensure_dir(const char *path, mode_t mode) {
        if (mkdir(path, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/*
 * Socket activation as sd_listen_fds(3) defines it: LISTEN_PID is this
 * process and LISTEN_FDS counts the sockets from fd 3 on. Only those
 * variables say a descriptor was passed; an fd 3 inherited by accident is
 * not a listening socket of ours. Return: 3, 0 when not activated, or -errno.
 */
static int activation_socket(void) {
        const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
        int type = 0, listening = 0;
        socklen_t len = sizeof(type);
        long n;

        if (!pid || !fds || strtol(pid, NULL, 10) != (long)getpid())
                return 0;
        n = strtol(fds, NULL, 10);
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDNAMES");
        if (n < 1)
                return 0;
        if (n > 1)
                log_warn("socket activation passed %ld sockets; serving the first (fd 3)", n);
        if (getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET)
                return -ESOCKTNOSUPPORT;
        len = sizeof(listening);
        if (getsockopt(3, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening)
                return -EINVAL;
        if (fcntl(3, F_SETFD, FD_CLOEXEC) < 0 ||
            fcntl(3, F_SETFL, fcntl(3, F_GETFL) | O_NONBLOCK) < 0)
                return -errno;
        return 3;
}

/* The path the socket @fd is bound to, for the log ("(unnamed)" if it has none). */
static void socket_name(int fd, char *buf, size_t size) {
        struct sockaddr_un sa = {0};
        socklen_t len = sizeof(sa);

        if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0 || sa.sun_family != AF_UNIX ||
            len <= offsetof(struct sockaddr_un, sun_path) || !sa.sun_path[0])
                snprintf(buf, size, "(unnamed)");
        else
                snprintf(buf, size, "%.*s", (int)(len - offsetof(struct sockaddr_un, sun_path)),
                         sa.sun_path);
}

/*
 * Clients find the daemon by the socket's path alone. If others may write the
 * directory, any local user could put a socket of their own there (before this
 * daemon starts, or in its place) and be shmbusd to every client: take their
 * publishers' messages, feed their subscribers. Said, not refused: a private
 * test setup may well use such a directory.
 */
static void warn_unsafe_socket_dir(const char *dir) {
        struct stat st;

        if (stat(dir, &st) < 0)
                return;
        if ((st.st_mode & 022) || (st.st_uid != geteuid() && st.st_uid != 0))
                log_warn("socket directory %s (uid %u, mode %04o) can be written by others: any "
                         "local user could replace the socket and answer clients as shmbusd. "
                         "Use a directory only root or shmbusd's user can write, such as "
                         "/run/shmbus",
                         dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
}

/* Make, bind and listen on @path; note in @d which file it made, to remove it at exit. */
static int listen_socket(struct daemon *d, const char *path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char dir[sizeof(sa.sun_path)];
        _cleanup_close_ int fd = -1;
        struct stat st;
        char *slash;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        strcpy(dir, path);
        slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = '\0';
                ensure_dir(dir, 0755);
        } else {
                snprintf(dir, sizeof(dir), "%s", slash ? "/" : ".");
        }
        warn_unsafe_socket_dir(dir);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /* A stale socket from a previous run is replaced; a live daemon is not. */
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                return -EADDRINUSE;
        /* Nor is anything but a socket: a mistyped path must not delete a file (as root). */
        if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
                return -ENOTSOCK;
        unlink(path);
        /* Everyone may connect; the broker checks each request against SO_PEERCRED. */
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0666) < 0 ||
            listen(fd, 128) < 0)
                return -errno;
        if (lstat(path, &st) == 0) {
                d->sock_dev = st.st_dev;
                d->sock_ino = st.st_ino;
        }
        return TAKE_FD(fd);
}

/* Remove the socket file at exit if this daemon made it and it is still the one it made. */
static void unlink_own_socket(const struct daemon *d) {
        struct stat st;

        if (d->activated || !d->sock_ino)
                return;
        if (lstat(d->cfg.socket_path, &st) == 0 && st.st_dev == d->sock_dev &&
            st.st_ino == d->sock_ino)
                unlink(d->cfg.socket_path);
}

static int load_config(struct daemon *d, struct config *cfg) {
        char err[512];
        int r;

        config_init_defaults(cfg);
        if (d->config_path) {
                r = config_load(cfg, d->config_path, err, sizeof(err));
                if (r < 0) {
                        log_err("config %s: %s", d->config_path, err);
                        config_deinit(cfg);
                        return r;
                }
        }
        if (d->have_socket)
                memcpy(cfg->socket_path, d->cmdline.socket_path, sizeof(cfg->socket_path));
        if (d->have_dir)
                memcpy(cfg->shm_dir, d->cmdline.shm_dir, sizeof(cfg->shm_dir));
        if (d->unblock_ms)
                cfg->unblock_timeout_ms = d->unblock_ms;
        if (d->log_level >= 0)
                cfg->log_level = d->log_level;
        log_set_max(cfg->log_level);
        return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
        struct daemon *d = arg;

        if (sig == SIGHUP) {
                struct config cfg;
                struct timespec ts;

                clock_gettime(CLOCK_MONOTONIC, &ts);
                notify("RELOADING=1\nMONOTONIC_USEC=%llu",
                       (unsigned long long)ts.tv_sec * 1000000 +
                               (unsigned long long)ts.tv_nsec / 1000);
                if (load_config(d, &cfg) < 0) {
                        log_err("reload failed; keeping the running configuration");
                        notify("READY=1\nSTATUS=reload failed; running on the previous "
                               "configuration");
                        return;
                }
                broker_set_config(d->broker, &cfg);
                config_deinit(&cfg);
                log_info("configuration reloaded");
                notify("READY=1\nSTATUS=serving %u channels (configuration reloaded)",
                       broker_n_channels(d->broker));
                return;
        }
        log_info("signal %d: shutting down", (int)sig);
        notify("STOPPING=1\nSTATUS=shutting down");
        event_base_loopbreak(d->base);
}

/* The watchdog ping: from the event loop itself, so a wedged loop stops pinging. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg) {
        struct daemon *d = arg;

        notify("WATCHDOG=1\nSTATUS=serving %u channels", broker_n_channels(d->broker));
}

/*
 * Read the command line into @d.
 * Return: 1 to go on, 0 to exit with success (--help, --version), -EINVAL on a
 * usage error (logged).
 */
static int parse_options(struct daemon *d, int argc, char **argv) {
        static const struct option opts[] = {
                {"socket", required_argument, NULL, 's'},
                {"shm-dir", required_argument, NULL, 'd'},
                {"config", required_argument, NULL, 'c'},
                {"unblock-timeout", required_argument, NULL, 'u'},
                {"check-config", no_argument, NULL, 'C'},
                {"log-level", required_argument, NULL, 'L'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},
                {0},
        };
        int c;

        while ((c = getopt_long(argc, argv, "s:d:c:u:hV", opts, NULL)) != -1) {
                switch (c) {
                case 's':
                        if (strlen(optarg) >= sizeof(d->cmdline.socket_path)) {
                                log_err("--socket: path too long");
                                return -EINVAL;
                        }
                        snprintf(d->cmdline.socket_path, sizeof(d->cmdline.socket_path), "%s",
                                 optarg);
                        d->have_socket = true;
                        break;
                case 'd':
                        if (optarg[0] != '/' || strlen(optarg) >= sizeof(d->cmdline.shm_dir)) {
                                log_err("--shm-dir: expected an absolute path");
                                return -EINVAL;
                        }
                        snprintf(d->cmdline.shm_dir, sizeof(d->cmdline.shm_dir), "%s", optarg);
                        d->have_dir = true;
                        break;
                case 'c':
                        d->config_path = optarg;
                        break;
                case 'u':
                        d->unblock_ms = (uint32_t)strtoul(optarg, NULL, 10);
                        if (d->unblock_ms == 0) {
                                log_err("--unblock-timeout: expected milliseconds > 0");
                                return -EINVAL;
                        }
                        break;
                case 'C':
                        d->check_only = true;
                        break;
                case 'L':
                        d->log_level = log_level_from_string(optarg);
                        if (d->log_level < LOG_ERR) {
                                log_err("--log-level: expected err, warning, notice, info or "
                                        "debug");
                                return -EINVAL;
                        }
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("shmbusd %s\n", shmbus_version());
                        return 0;
                default:
                        usage(stderr);
                        return -EINVAL;
                }
        }
        return 1;
}

/* The shm directory (made if missing, refused if unsafe) and the listening socket. */
static int setup_socket(struct daemon *d) {
        char err[512];
        int r;

        r = ensure_dir(d->cfg.shm_dir, 0755);
        if (r < 0) {
                log_err("shm directory %s: %s", d->cfg.shm_dir, strerror(-r));
                return r;
        }
        /* The directory itself, with what to run if another daemon's uid left it... */
        r = handover_check_dir(d->cfg.shm_dir, err, sizeof(err));
        if (r >= 0)
                /* ...then every directory above it, and the descriptor used from now on. */
                r = shmdir_open(d->cfg.shm_dir, err, sizeof(err));
        if (r < 0) {
                log_err("shm directory %s: %s; refusing to use it", d->cfg.shm_dir, err);
                return r;
        }
        d->shm_dirfd = r;
        r = activation_socket();
        d->activated = r > 0;
        if (r == 0)
                r = listen_socket(d, d->cfg.socket_path);
        if (r < 0) {
                log_err("socket %s: %s", d->cfg.socket_path,
                        r == -EADDRINUSE        ? "another shmbusd is serving it"
                        : r == -ESOCKTNOSUPPORT ? "the activation socket must be SOCK_SEQPACKET"
                        : r == -ENOTSOCK
                                ? "a file that is not a socket is in the way; not removing "
                                  "it (move it away, or give another path with --socket "
                                  "or \"socket\" in the configuration)"
                                : strerror(-r));
                return r;
        }
        d->listen_fd = r;
        /* The socket actually served: with activation, systemd's, whatever the config says. */
        socket_name(r, d->served, sizeof(d->served));
        if (d->activated && strcmp(d->served, d->cfg.socket_path) != 0)
                log_notice("serving the socket systemd passed, %s (not %s)", d->served,
                           d->cfg.socket_path);
        return 0;
}

/* The event loop, the broker on it, signals, and the systemd watchdog if one is asked for. */
static int setup_broker(struct daemon *d) {
        static const int signals[N_SIGNALS] = {SIGTERM, SIGINT, SIGHUP};
        int r;

        signal(SIGPIPE, SIG_IGN);
        d->base = event_base_new();
        if (!d->base)
                goto err_oom;
        /* The broker owns the directory's descriptor from here, even if it fails. */
        r = broker_new(d->base, &d->cfg, d->listen_fd, TAKE_FD(d->shm_dirfd), &d->broker);
        if (r < 0)
                goto err_oom;
        for (int i = 0; i < N_SIGNALS; i++) {
                d->sigs[i] = evsignal_new(d->base, signals[i], on_signal, d);
                if (!d->sigs[i])
                        goto err_oom;
                event_add(d->sigs[i], NULL);
        }
        if (notify_watchdog_usec()) {
                /* Ping at half the interval, as sd_watchdog_enabled(3) advises. */
                struct timeval tv = {.tv_sec = (time_t)(notify_watchdog_usec() / 2000000),
                                     .tv_usec =
                                             (suseconds_t)(notify_watchdog_usec() / 2 % 1000000)};

                d->watchdog = event_new(d->base, -1, EV_PERSIST, on_watchdog, d);
                if (!d->watchdog)
                        goto err_oom;
                event_add(d->watchdog, &tv);
        }
        return 0;
err_oom:
        log_err("out of memory");
        return -ENOMEM;
}

static void run(struct daemon *d) {
        log_info("%s ready: socket %s%s, channels in %s (%u adopted), unblock after %u ms",
                 shmbus_version(), d->served, d->activated ? " (passed by systemd)" : "",
                 d->cfg.shm_dir, broker_n_channels(d->broker), d->cfg.unblock_timeout_ms);
        /* Only now: the socket listens and every channel that could be adopted is. */
        notify("READY=1\nSTATUS=serving %u channels from %s", broker_n_channels(d->broker),
               d->cfg.shm_dir);
        event_base_dispatch(d->base);
}

/* Undo whatever of setup_socket() and setup_broker() was done. */
static void teardown(struct daemon *d) {
        for (int i = 0; i < N_SIGNALS; i++)
                if (d->sigs[i])
                        event_free(d->sigs[i]);
        if (d->watchdog)
                event_free(d->watchdog);
        d->broker = broker_free(d->broker);
        if (d->shm_dirfd >= 0)
                close(d->shm_dirfd);
        if (d->base)
                event_base_free(d->base);
        if (d->listen_fd >= 0) {
                /*
                 * A socket systemd passed us is systemd's to remove. Ours goes
                 * while it still listens: a shmbusd starting meanwhile connects
                 * to it and stops, instead of binding a socket of its own that
                 * our check of the inode and our unlink could fall between.
                 */
                unlink_own_socket(d);
                close(d->listen_fd);
        }
        config_deinit(&d->cfg);
}

/*
 * Every channel holds an eventfd and every connection a socket and a pidfd:
 * at the default limits (256 channels, 256 connections) that is over 800
 * descriptors, near the usual soft limit of 1024. The daemon never uses
 * select(), so take the hard limit (the unit sets LimitNOFILE).
 */
static void raise_fd_limit(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
}

int main(int argc, char **argv) {
        struct daemon d = {.listen_fd = -1, .shm_dirfd = -1, .log_level = -1};
        int r;

        log_open();
        notify_init();
        r = parse_options(&d, argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        if (load_config(&d, &d.cfg) < 0)
                return 1;
        if (d.check_only) {
                printf("configuration OK\n");
                config_deinit(&d.cfg);
                return 0;
        }
        raise_fd_limit();
        r = setup_socket(&d);
        if (r == 0)
                r = setup_broker(&d);
        if (r == 0)
                run(&d);
        teardown(&d);
        return r < 0 ? 1 : 0;
}
