/* SPDX-License-Identifier: MIT */
/*
 * shmbus._shmbus: the CPython binding of libshmbus, through include/shmbus.h
 * only. The package shmbus (python/shmbus/__init__.py) re-exports it.
 *
 * Types: Client (a daemon connection), Channel, Publisher with Claim (a
 * writable in-place message), Subscriber with Message (a borrowed, read-only
 * message in shared memory), WaitSet (one thread waiting for many). The
 * asyncio coroutines are Python (shmbus/_aio.py), on the descriptors that
 * fileno() returns.
 *
 * Invariants that keep Python from touching shared memory it does not own:
 *  - Claim and Message export their memory through the buffer protocol and
 *    count the exports. The memory is given back to the library (commit,
 *    abort, release) only when the count is zero; until then those calls
 *    raise BufferError. A memoryview keeps its exporter alive, so no view can
 *    outlive the memory it shows. Once given back, the object refuses new
 *    exports (ValueError), and the memoryview handed out by __enter__ is
 *    released, so using it raises ValueError.
 *  - A Subscriber has at most one Message borrowed (the library releases the
 *    previous one on the next peek or receive): the next recv()/peek()
 *    releases it, or raises BufferError while it is still exported.
 *  - A Publisher has at most one open Claim, likewise.
 *  - Blocking waits run without the GIL, in slices so that signals are seen.
 *    A Publisher or Subscriber is marked busy meanwhile; using it from another
 *    thread then raises RuntimeError instead of racing in the library, which
 *    allows one thread per object.
 *  - A Subscriber or Publisher in a WaitSet cannot be closed: the library's
 *    set refers to its object. The WaitSet holds its members alive.
 */
/* Python.h comes before any system header, as the C API asks: it sets feature macros. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "shmbus.h"

#define WAIT_SLICE_MS   100           /* longest wait without looking at signals */
#define PY_ERROR_SET    (INT_MIN + 1) /* a wait ended with a Python exception set */
#define TIMEOUT_FOREVER (-1)

/* Python before 3.13 takes keyword lists as char **; it never writes to them. */
#define KW(list) ((char **)(list))

/* ---- errors ---------------------------------------------------------------------------- */

static PyObject *Error, *PermissionErr, *TimeoutErr, *NotFoundErr, *ExistsErr, *BlockingErr,
        *ConnectionErr, *StaleErr;

static PyObject *error_type(int err) {
        switch (err) {
        case EACCES:
        case EPERM:
                return PermissionErr;
        case ETIMEDOUT:
                return TimeoutErr;
        case ENOENT:
                return NotFoundErr;
        case EEXIST:
                return ExistsErr;
        case EAGAIN:
                return BlockingErr;
        case ECONNREFUSED:
        case ECONNABORTED:
        case ECONNRESET:
        case ENOTCONN:
        case EPIPE:
                return ConnectionErr;
        case ESTALE:
                return StaleErr;
        default:
                return Error;
        }
}

/*
 * Raise the exception for a negative errno code: OSError(errno, message[,
 * filename]) of the matching shmbus class. @message is the daemon's sentence
 * when there is one, else the library's wording.
 */
static PyObject *raise_code(int r, PyObject *message, PyObject *filename) {
        PyObject *type, *exc;

        if (r == PY_ERROR_SET)
                return NULL;
        if (r == -ENOMEM)
                return PyErr_NoMemory();
        type = error_type(-r);
        if (message)
                exc = PyObject_CallFunction(type, filename ? "iOO" : "iO", -r, message, filename);
        else
                exc = PyObject_CallFunction(type, filename ? "isO" : "is", -r, shmbus_strerror(r),
                                            filename);
        if (exc) {
                PyErr_SetObject(type, exc);
                Py_DECREF(exc);
        }
        return NULL;
}

static PyObject *new_error(const char *name, PyObject *builtin, const char *doc) {
        PyObject *bases, *type;

        bases = builtin ? PyTuple_Pack(2, Error, builtin) : PyTuple_Pack(1, Error);
        if (!bases)
                return NULL;
        type = PyErr_NewExceptionWithDoc(name, doc, bases, NULL);
        Py_DECREF(bases);
        return type;
}

/* ---- timeouts and waiting --------------------------------------------------------------- */

static int64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Seconds as Python spells them (None: forever, 0: do not wait) to nanoseconds, -1 forever. */
static int parse_timeout(PyObject *obj, int64_t *ret_ns) {
        double s;

        if (!obj || obj == Py_None) {
                *ret_ns = TIMEOUT_FOREVER;
                return 0;
        }
        s = PyFloat_AsDouble(obj);
        if (s == -1.0 && PyErr_Occurred())
                return -1;
        if (!(s >= 0.0)) {
                PyErr_SetString(PyExc_ValueError, "timeout must be None or a number >= 0");
                return -1;
        }
        /* Beyond a century is forever, and keeps the deadline arithmetic in range. */
        *ret_ns = s > 3.0e9 ? TIMEOUT_FOREVER : (int64_t)(s * 1e9);
        return 0;
}

/*
 * Arguments of the hot calls, (timeout=None) or (x, /, timeout=None), parsed
 * by hand: for recv(), peek() and send(), the generic keyword parser costs
 * more than the receive or send itself. *@ret_first gets x when @npos is 1.
 */
static int fast_args(const char *fn, Py_ssize_t npos, PyObject *const *args, size_t nargsf,
                     PyObject *kwnames, PyObject **ret_first, int64_t *ret_ns) {
        Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
        Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;

        if (nargs < npos || nargs + nkw > npos + 1 ||
            (nkw &&
             PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "timeout") != 0)) {
                PyErr_Format(PyExc_TypeError, "%s(%stimeout=None): bad arguments", fn,
                             npos ? "data, /, " : "");
                return -1;
        }
        if (npos)
                *ret_first = args[0];
        return parse_timeout(nargs + nkw > npos ? args[npos] : NULL, ret_ns);
}

typedef int (*wait_fn)(void *ctx, int timeout_ms);

/*
 * Call @fn without waiting first, holding the GIL: when something is there, no
 * thread switch is paid. Otherwise call it again without the GIL, in slices of
 * WAIT_SLICE_MS, until it gives something other than -EAGAIN/-ETIMEDOUT, the
 * time runs out (-ETIMEDOUT; -EAGAIN for a zero timeout), or a signal handler
 * raises (PY_ERROR_SET). *@busy is set for the time without the GIL.
 */
static int wait_call(int *busy, wait_fn fn, void *ctx, int64_t timeout_ns) {
        PyThreadState *ts;
        int64_t deadline;
        int r;

        r = fn(ctx, 0);
        if ((r != -EAGAIN && r != -ETIMEDOUT) || timeout_ns == 0)
                return r;
        deadline = timeout_ns < 0 ? INT64_MAX : now_ns() + timeout_ns;
        *busy = 1;
        for (;;) {
                int64_t left = deadline - now_ns();
                int ms;

                if (left <= 0) {
                        r = -ETIMEDOUT;
                        break;
                }
                ms = left >= (int64_t)WAIT_SLICE_MS * 1000000 ? WAIT_SLICE_MS
                                                              : (int)((left + 999999) / 1000000);
                ts = PyEval_SaveThread();
                r = fn(ctx, ms);
                PyEval_RestoreThread(ts);
                if (r != -EAGAIN && r != -ETIMEDOUT)
                        break;
                if (PyErr_CheckSignals() < 0) {
                        r = PY_ERROR_SET;
                        break;
                }
        }
        *busy = 0;
        return r;
}

static int busy_error(const char *what) {
        PyErr_Format(PyExc_RuntimeError, "%s is waiting in another thread; use one %s per thread",
                     what, what);
        return -1;
}

static int closed_error(const char *what) {
        PyErr_Format(PyExc_ValueError, "%s is closed", what);
        return -1;
}

/* ---- options ---------------------------------------------------------------------------- */

static int parse_policy(PyObject *obj, int *ret) {
        const char *s;

        if (PyLong_Check(obj)) {
                long v = PyLong_AsLong(obj);

                if (v == SHMBUS_POLICY_BLOCK || v == SHMBUS_POLICY_OVERWRITE) {
                        *ret = (int)v;
                        return 0;
                }
                if (!PyErr_Occurred())
                        PyErr_SetString(PyExc_ValueError,
                                        "policy must be \"block\" or \"overwrite\"");
                return -1;
        }
        s = PyUnicode_Check(obj) ? PyUnicode_AsUTF8(obj) : NULL;
        if (s && strcmp(s, "block") == 0)
                *ret = SHMBUS_POLICY_BLOCK;
        else if (s && strcmp(s, "overwrite") == 0)
                *ret = SHMBUS_POLICY_OVERWRITE;
        else {
                if (!PyErr_Occurred())
                        PyErr_SetString(PyExc_ValueError,
                                        "policy must be \"block\" or \"overwrite\"");
                return -1;
        }
        return 0;
}

/* Geometry keywords shared by Client.open() and Channel.create(). */
struct geometry {
        PyObject *capacity, *max_msg, *policy, *max_subscribers, *max_publishers;
        PyObject *slow_subscriber_timeout, *grant_uids, *grant_gids; /* Client.open() only */
};

static bool given(PyObject *v) {
        return v && v != Py_None;
}

/* None counts as not given: the daemon's defaults then apply, not the library's. */
static bool geometry_given(const struct geometry *g) {
        return given(g->capacity) || given(g->max_msg) || given(g->policy) ||
               given(g->max_subscribers) || given(g->max_publishers) ||
               given(g->slow_subscriber_timeout) || given(g->grant_uids) || given(g->grant_gids);
}

static int set_u64(shmbus_opts *o, PyObject *v, const char *name,
                   int (*set)(shmbus_opts *, uint64_t)) {
        unsigned long long n;

        if (!given(v))
                return 0;
        n = PyLong_AsUnsignedLongLong(v);
        if (PyErr_Occurred())
                return -1;
        if (set(o, n) < 0) {
                PyErr_Format(PyExc_ValueError, "%s=%llu is out of range", name, n);
                return -1;
        }
        return 0;
}

static int set_u32(shmbus_opts *o, PyObject *v, const char *name,
                   int (*set)(shmbus_opts *, uint32_t)) {
        unsigned long n;

        if (!given(v))
                return 0;
        n = PyLong_AsUnsignedLong(v);
        if (PyErr_Occurred())
                return -1;
        if (n > UINT32_MAX || set(o, (uint32_t)n) < 0) {
                PyErr_Format(PyExc_ValueError, "%s=%lu is out of range", name, n);
                return -1;
        }
        return 0;
}

/* "subscribe", "publish" or an iterable of them, to SHMBUS_GRANT_* bits. */
static int parse_roles(PyObject *obj, int *ret) {
        PyObject *it, *item;
        int roles = 0;

        if (PyUnicode_Check(obj))
                obj = PyTuple_Pack(1, obj);
        else
                Py_INCREF(obj);
        if (!obj)
                return -1;
        it = PyObject_GetIter(obj);
        Py_DECREF(obj);
        if (!it)
                return -1;
        while ((item = PyIter_Next(it))) {
                const char *r = PyUnicode_Check(item) ? PyUnicode_AsUTF8(item) : NULL;

                if (r && strcmp(r, "subscribe") == 0)
                        roles |= SHMBUS_GRANT_SUBSCRIBE;
                else if (r && strcmp(r, "publish") == 0)
                        roles |= SHMBUS_GRANT_PUBLISH;
                else {
                        Py_DECREF(item);
                        Py_DECREF(it);
                        if (!PyErr_Occurred())
                                PyErr_SetString(PyExc_ValueError,
                                                "roles are \"subscribe\" and \"publish\"");
                        return -1;
                }
                Py_DECREF(item);
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
                return -1;
        *ret = roles;
        return 0;
}

/* {uid or gid: roles} into the options' grants. */
static int set_grants(shmbus_opts *o, PyObject *map, bool gids) {
        PyObject *key, *value;
        Py_ssize_t pos = 0;

        if (!given(map))
                return 0;
        if (!PyDict_Check(map)) {
                PyErr_SetString(PyExc_TypeError, "grants are a dict {id: roles}");
                return -1;
        }
        while (PyDict_Next(map, &pos, &key, &value)) {
                unsigned long id = PyLong_AsUnsignedLong(key);
                int roles, r;

                if ((id == (unsigned long)-1 && PyErr_Occurred()) || parse_roles(value, &roles) < 0)
                        return -1;
                r = gids ? shmbus_opts_grant_gid(o, (gid_t)id, roles)
                         : shmbus_opts_grant_uid(o, (uid_t)id, roles);
                if (r < 0) {
                        PyErr_Format(PyExc_ValueError, "cannot grant to %s %lu: %s",
                                     gids ? "gid" : "uid", id, shmbus_strerror(r));
                        return -1;
                }
        }
        return 0;
}

/* Options from the keywords, or NULL (and no error) when none was given. */
static int geometry_to_opts(const struct geometry *g, shmbus_opts **ret_opts) {
        shmbus_opts *o;
        int policy;

        *ret_opts = NULL;
        if (!geometry_given(g))
                return 0;
        if (shmbus_opts_new(&o) < 0) {
                PyErr_NoMemory();
                return -1;
        }
        if (set_u64(o, g->capacity, "capacity", shmbus_opts_set_capacity) < 0 ||
            set_u32(o, g->max_msg, "max_msg", shmbus_opts_set_max_msg) < 0 ||
            set_u32(o, g->max_subscribers, "max_subscribers", shmbus_opts_set_max_subscribers) <
                    0 ||
            set_u32(o, g->max_publishers, "max_publishers", shmbus_opts_set_max_publishers) < 0)
                goto err_free;
        if (given(g->slow_subscriber_timeout)) {
                double t = PyFloat_AsDouble(g->slow_subscriber_timeout);

                if ((t == -1.0 && PyErr_Occurred()) || !(t >= 0.0 && t <= 3600.0) ||
                    shmbus_opts_set_slow_subscriber_timeout(o, (uint32_t)(t * 1000.0 + 0.5)) < 0) {
                        if (!PyErr_Occurred())
                                PyErr_SetString(PyExc_ValueError,
                                                "slow_subscriber_timeout is 0 to 3600 seconds");
                        goto err_free;
                }
        }
        if (set_grants(o, g->grant_uids, false) < 0 || set_grants(o, g->grant_gids, true) < 0)
                goto err_free;
        if (given(g->policy)) {
                if (parse_policy(g->policy, &policy) < 0)
                        goto err_free;
                shmbus_opts_set_policy(o, policy);
        }
        *ret_opts = o;
        return 0;
err_free:
        shmbus_opts_free(o);
        return -1;
}

/* ---- JSON through the json module (the binding adds no C dependency) -------------------- */

static PyObject *json_call(const char *fn, PyObject *arg) {
        PyObject *json, *r;

        json = PyImport_ImportModule("json");
        if (!json)
                return NULL;
        r = PyObject_CallMethod(json, fn, "O", arg);
        Py_DECREF(json);
        return r;
}

/* ---- asyncio: coroutines written in Python (shmbus/_aio.py) on the objects' descriptors ---- */

static PyObject *aio_module;

/* Call shmbus._aio.@fn(self, *args, **kwargs): the methods' coroutines live there. */
static PyObject *aio_method(const char *fn, PyObject *self, PyObject *const *args, size_t nargsf,
                            PyObject *kwnames) {
        Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
        Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
        PyObject *stack[4], *f, *r;

        if (nargs + nkw > 3) {
                PyErr_Format(PyExc_TypeError, "%s(): too many arguments", fn);
                return NULL;
        }
        if (!aio_module && !(aio_module = PyImport_ImportModule("shmbus._aio")))
                return NULL;
        f = PyObject_GetAttrString(aio_module, fn);
        if (!f)
                return NULL;
        stack[0] = self;
        for (Py_ssize_t i = 0; i < nargs + nkw; i++)
                stack[i + 1] = args[i];
        r = PyObject_Vectorcall(f, stack, (size_t)(nargs + 1), kwnames);
        Py_DECREF(f);
        return r;
}

static PyObject *self_aiter(PyObject *self) {
        return Py_NewRef(self);
}

/*
 * An awaitable that is already done: what recv_async() returns when a message
 * is there, so the common case costs no coroutine. Awaiting it gives the value
 * without suspending, as a StreamReader with buffered data does.
 */
typedef struct {
        PyObject_HEAD PyObject *value;
} ReadyObject;

static PyTypeObject ReadyType;

static PyObject *ready_new(PyObject *value) {
        ReadyObject *r = PyObject_New(ReadyObject, &ReadyType);

        if (!r) {
                Py_DECREF(value);
                return NULL;
        }
        r->value = value;
        return (PyObject *)r;
}

static void ready_dealloc(ReadyObject *self) {
        Py_XDECREF(self->value);
        Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The first step ends the iteration with the value: StopIteration(value). */
static PyObject *ready_iternext(ReadyObject *self) {
        PyObject *v = self->value, *stop;

        if (!v)
                return NULL;
        self->value = NULL;
        stop = PyObject_CallOneArg(PyExc_StopIteration, v);
        Py_DECREF(v);
        if (stop) {
                PyErr_SetObject(PyExc_StopIteration, stop);
                Py_DECREF(stop);
        }
        return NULL;
}

static PyAsyncMethods ready_as_async = {
        .am_await = self_aiter,
};

static PyTypeObject ReadyType = {
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmbus._Ready",
        .tp_basicsize = sizeof(ReadyObject),
        .tp_dealloc = (destructor)ready_dealloc,
        .tp_as_async = &ready_as_async,
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_doc = "A finished awaitable: what recv_async() returns when a message was there.",
        .tp_iter = PyObject_SelfIter,
        .tp_iternext = (iternextfunc)ready_iternext,
};

/* ---- Client ----------------------------------------------------------------------------- */

typedef struct {
        PyObject_HEAD shmbus_client *client;
        int inflight; /* requests running without the GIL: close() must wait for them */
} ClientObject;

typedef struct {
        PyObject_HEAD shmbus_channel *chan;
} ChannelObject;

static PyTypeObject ClientType, ChannelType, PublisherType, ClaimType, SubscriberType, MessageType;

/*
 * Raise for a failed client call, with the library's account of it: the
 * daemon's sentence where it answered. shmbus_client_last_error() is kept per
 * thread, and the call ran on this thread (the GIL was given up, the thread
 * was not left).
 */
static PyObject *raise_client(const shmbus_client *client, int r, PyObject *filename) {
        const char *why = shmbus_client_last_error(client);
        PyObject *msg = *why ? PyUnicode_DecodeUTF8(why, (Py_ssize_t)strlen(why), "replace") : NULL;

        PyErr_Clear();
        raise_code(r, msg, filename);
        Py_XDECREF(msg);
        return NULL;
}

/* Seconds (None: the library's default; math.inf: forever) to the library's milliseconds. */
static int parse_request_timeout(PyObject *obj, int *ret_ms) {
        double s = PyFloat_AsDouble(obj);

        if (s == -1.0 && PyErr_Occurred())
                return -1;
        if (!(s > 0.0)) {
                PyErr_SetString(PyExc_ValueError, "timeout must be a number > 0, or None");
                return -1;
        }
        *ret_ms = s >= (double)INT_MAX / 1000.0 ? -1 : (int)(s * 1000.0 + 0.999);
        return 0;
}

static int client_init(ClientObject *self, PyObject *args, PyObject *kwds) {
        static const char *kwlist[] = {"socket", "timeout", "wait", NULL};
        PyObject *bytes = NULL, *timeout = Py_None, *wait = Py_None, *name;
        shmbus_client *c = NULL;
        const char *path;
        PyThreadState *ts;
        int timeout_ms = 0, wait_ms = 0, r;

        if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O&$OO:Client", KW(kwlist),
                                         PyUnicode_FSConverter, &bytes, &timeout, &wait))
                return -1;
        if (self->client) {
                Py_XDECREF(bytes);
                PyErr_SetString(PyExc_RuntimeError, "Client is already initialised");
                return -1;
        }
        if ((timeout != Py_None && parse_request_timeout(timeout, &timeout_ms) < 0) ||
            (wait != Py_None && parse_request_timeout(wait, &wait_ms) < 0)) {
                Py_XDECREF(bytes);
                return -1;
        }
        path = bytes ? PyBytes_AS_STRING(bytes) : NULL;
        ts = PyEval_SaveThread();
        r = wait != Py_None ? shmbus_client_new_wait(path, wait_ms, &c)
                            : shmbus_client_new(path, &c);
        PyEval_RestoreThread(ts);
        if (r < 0) {
                name = path ? PyUnicode_DecodeFSDefault(path) : NULL;
                raise_client(NULL, r, name);
                Py_XDECREF(name);
                Py_XDECREF(bytes);
                return -1;
        }
        Py_XDECREF(bytes);
        if (timeout != Py_None)
                shmbus_client_set_timeout(c, timeout_ms);
        self->client = c;
        return 0;
}

static void client_dealloc(ClientObject *self) {
        shmbus_client_free(self->client);
        Py_TYPE(self)->tp_free((PyObject *)self);
}

static int client_check(ClientObject *self) {
        if (!self->client)
                return closed_error("Client");
        return 0;
}

/* One raw request and its reply, parsed; NULL with an exception on failure. */
static PyObject *client_roundtrip(ClientObject *self, PyObject *req) {
        PyObject *text, *reply;
        PyThreadState *ts;
        const char *s;
        char *out = NULL;
        int r;

        text = PyUnicode_Check(req) ? Py_NewRef(req) : json_call("dumps", req);
        if (!text)
                return NULL;
        s = PyUnicode_AsUTF8(text);
        if (!s) {
                Py_DECREF(text);
                return NULL;
        }
        self->inflight++;
        ts = PyEval_SaveThread();
        r = shmbus_client_request(self->client, s, &out);
        PyEval_RestoreThread(ts);
        self->inflight--;
        Py_DECREF(text);
        if (r < 0)
                return raise_client(self->client, r, NULL);
        text = PyUnicode_FromString(out);
        free(out);
        if (!text)
                return NULL;
        reply = json_call("loads", text);
        Py_DECREF(text);
        return reply;
}

static PyObject *channel_wrap(shmbus_channel *chan) {
        ChannelObject *o = PyObject_New(ChannelObject, &ChannelType);

        if (!o) {
                shmbus_channel_unref(chan);
                return NULL;
        }
        o->chan = chan;
        return (PyObject *)o;
}

static PyObject *client_open(ClientObject *self, PyObject *args, PyObject *kwds) {
        static const char *kwlist[] = {"name",
                                       "publish",
                                       "create",
                                       "accept_existing",
                                       "wait",
                                       "capacity",
                                       "max_msg",
                                       "policy",
                                       "max_subscribers",
                                       "max_publishers",
                                       "slow_subscriber_timeout",
                                       "grant_uids",
                                       "grant_gids",
                                       NULL};
        struct geometry g = {0};
        shmbus_channel *chan = NULL;
        shmbus_opts *opts;
        PyThreadState *ts;
        PyObject *name;
        int publish = 0, create = 0, accept = 0, wait = 0, flags, r;
        const char *s;

        if (!PyArg_ParseTupleAndKeywords(args, kwds, "U|$ppppOOOOOOOO:open", KW(kwlist), &name,
                                         &publish, &create, &accept, &wait, &g.capacity, &g.max_msg,
                                         &g.policy, &g.max_subscribers, &g.max_publishers,
                                         &g.slow_subscriber_timeout, &g.grant_uids, &g.grant_gids))
                return NULL;
        if (client_check(self) < 0 || !(s = PyUnicode_AsUTF8(name)))
                return NULL;
        if (geometry_to_opts(&g, &opts) < 0)
                return NULL;
        flags = (publish ? SHMBUS_OPEN_PUBLISH : 0) | (create ? SHMBUS_OPEN_CREATE : 0) |
                (accept ? SHMBUS_OPEN_ACCEPT_EXISTING : 0) | (wait ? SHMBUS_OPEN_WAIT : 0);
        self->inflight++;
        ts = PyEval_SaveThread();
        r = shmbus_client_open(self->client, s, flags, opts, &chan);
        PyEval_RestoreThread(ts);
        self->inflight--;
        shmbus_opts_free(opts);
        if (r < 0)
                return raise_client(self->client, r, name);
        return channel_wrap(chan);
}

static PyObject *client_delete(ClientObject *self, PyObject *args) {
        PyThreadState *ts;
        PyObject *name;
        const char *s;
        int r;

        if (!PyArg_ParseTuple(args, "U:delete", &name) || client_check(self) < 0 ||
            !(s = PyUnicode_AsUTF8(name)))
                return NULL;
        self->inflight++;
        ts = PyEval_SaveThread();
        r = shmbus_client_delete(self->client, s);
        PyEval_RestoreThread(ts);
        self->inflight--;
        if (r < 0)
                return raise_client(self->client, r, name);
        Py_RETURN_NONE;
}

static PyObject *client_request(ClientObject *self, PyObject *req) {
        if (client_check(self) < 0)
                return NULL;
        return client_roundtrip(self, req);
}

static PyObject *client_close(ClientObject *self, PyObject *unused) {
        if (self->inflight) {
                busy_error("Client");
                return NULL;
        }
        self->client = shmbus_client_free(self->client);
        Py_RETURN_NONE;
}

static PyObject *return_self(PyObject *self, PyObject *unused) {
        return Py_NewRef(self);
}

static PyObject *call_close(PyObject *self, PyObject *args) {
        return PyObject_CallMethod(self, "close", NULL);
}

static PyMethodDef client_methods[] = {
        {"open", (PyCFunction)(void (*)(void))client_open, METH_VARARGS | METH_KEYWORDS,
         "open(name, *, publish=False, create=False, accept_existing=False, wait=False,\n"
         "     capacity=None, max_msg=None, policy=None, max_subscribers=None,\n"
         "     max_publishers=None, slow_subscriber_timeout=None, grant_uids=None,\n"
         "     grant_gids=None) -> Channel\n\n"
         "Open a channel through the daemon, which checks permissions. publish=True maps it\n"
         "for publishing; create=True creates it if it does not exist, with the given\n"
         "geometry (capacity in bytes, a power of two; policy \"block\" or \"overwrite\";\n"
         "slow_subscriber_timeout in seconds, after which a block channel evicts a\n"
         "subscriber that stalls it) and grants ({uid: \"subscribe\" | \"publish\" | both\n"
         "in a tuple}). The daemon's per-channel configuration wins over the keywords.\n"
         "If the channel exists with other settings, FileExistsError, unless\n"
         "accept_existing=True (then see the Channel's attributes). wait=True asks\n"
         "again until the channel exists or the client's timeout passes.\n\n"
         "Raises FileNotFoundError, PermissionError, ConnectionError or shmbus.Error,\n"
         "carrying the daemon's explanation."},
        {"delete", (PyCFunction)client_delete, METH_VARARGS,
         "delete(name) -> None\n\nDelete a channel (owner or root). Processes that have it\n"
         "keep it until they let go; nobody new can open it."},
        {"request", (PyCFunction)client_request, METH_O,
         "request(req) -> dict\n\nSend one raw request (a dict, or its JSON text) as in\n"
         "docs/PROTOCOL.md and return the parsed reply, which may say \"ok\": false.\n"
         "Not for \"open\" (use open(), which keeps the descriptors)."},
        {"close", (PyCFunction)client_close, METH_NOARGS,
         "close() -> None\n\nClose the connection. Channels opened through it stay usable."},
        {"__enter__", return_self, METH_NOARGS, NULL},
        {"__exit__", call_close, METH_VARARGS, NULL},
        {NULL, NULL, 0, NULL},
};

static PyObject *client_get_closed(ClientObject *self, void *unused) {
        return PyBool_FromLong(!self->client);
}

static PyGetSetDef client_getset[] = {
        {"closed", (getter)client_get_closed, NULL, "True once close() was called.", NULL},
        {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ClientType = {
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmbus.Client",
        .tp_basicsize = sizeof(ClientObject),
        .tp_dealloc = (destructor)client_dealloc,
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_doc =
                "Client(socket=None)\n\n"
                "A connection to shmbusd, the daemon that hands out channels. socket is the\n"
                "daemon's socket path; None means $SHMBUS_SOCKET, else " SHMBUS_DEFAULT_SOCKET ".\n"
                "Thread-safe; reconnects by itself if the daemon restarts. A context manager\n"
                "that closes it.",
        .tp_methods = client_methods,
        .tp_getset = client_getset,
        .tp_init = (initproc)client_init,
        .tp_new = PyType_GenericNew,
};

/* ---- Channel ---------------------------------------------------------------------------- */

static void channel_dealloc(ChannelObject *self) {
        shmbus_channel_unref(self->chan);
        Py_TYPE(self)->tp_free((PyObject *)self);
}

static int channel_check(ChannelObject *self) {
        if (!self->chan)
                return closed_error("Channel");
        return 0;
}

static PyObject *channel_create(PyObject *cls, PyObject *args, PyObject *kwds) {
        static const char *kwlist[] = {"dir",
                                       "name",
                                       "capacity",
                                       "max_msg",
                                       "policy",
                                       "max_subscribers",
                                       "max_publishers",
                                       "mode",
                                       NULL};
        struct geometry g = {0};
        PyObject *dir;
        shmbus_channel *chan = NULL;
        shmbus_opts *opts;
        PyThreadState *ts;
        const char *name;
        unsigned int mode = 0600;
        int r;

        if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&s|$OOOOOI:create", KW(kwlist),
                                         PyUnicode_FSConverter, &dir, &name, &g.capacity,
                                         &g.max_msg, &g.policy, &g.max_subscribers,
                                         &g.max_publishers, &mode))
                return NULL;
        if (geometry_to_opts(&g, &opts) < 0) {
                Py_DECREF(dir);
                return NULL;
        }
        ts = PyEval_SaveThread();
        r = shmbus_channel_create(PyBytes_AS_STRING(dir), name, opts, mode, &chan);
        PyEval_RestoreThread(ts);
        shmbus_opts_free(opts);
        Py_DECREF(dir);
        if (r < 0) {
                PyObject *n = PyUnicode_FromString(name);

                raise_code(r, NULL, n);
                Py_XDECREF(n);
                return NULL;
        }
        return channel_wrap(chan);
}

static PyObject *channel_open(PyObject *cls, PyObject *args, PyObject *kwds) {
        static const char *kwlist[] = {"dir", "name", "publish", "inspect", NULL};
        PyObject *dir, *n;
        shmbus_channel *chan = NULL;
        const char *name;
        int publish = 0, inspect = 0, r;

        if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&s|$pp:open", KW(kwlist),
                                         PyUnicode_FSConverter, &dir, &name, &publish, &inspect))
                return NULL;
        r = shmbus_channel_open(
                PyBytes_AS_STRING(dir), name,
                (publish ? SHMBUS_OPEN_PUBLISH : 0) | (inspect ? SHMBUS_OPEN_INSPECT : 0), &chan);
        Py_DECREF(dir);
        if (r < 0) {
                n = PyUnicode_FromString(name);
                raise_code(r, NULL, n);
                Py_XDECREF(n);
                return NULL;
        }
        return channel_wrap(chan);
}

static PyObject *channel_unlink(PyObject *unused, PyObject *args) {
        PyObject *dir, *n;
        const char *name;
        int r;

        if (!PyArg_ParseTuple(args, "O&s:unlink", PyUnicode_FSConverter, &dir, &name))
                return NULL;
        r = shmbus_channel_unlink(PyBytes_AS_STRING(dir), name);
        Py_DECREF(dir);
        if (r < 0) {
                n = PyUnicode_FromString(name);
                raise_code(r, NULL, n);
                Py_XDECREF(n);
                return NULL;
        }
        Py_RETURN_NONE;
}

static PyObject *channel_close(ChannelObject *self, PyObject *unused) {
        self->chan = shmbus_channel_unref(self->chan);
        Py_RETURN_NONE;
}

static PyObject *channel_publisher(ChannelObject *self, PyObject *unused) {
        return PyObject_CallOneArg((PyObject *)&PublisherType, (PyObject *)self);
}

static PyObject *channel_subscriber(ChannelObject *self, PyObject *args, PyObject *kwds) {
        PyObject *pos = PyTuple_Pack(1, self), *r;

        if (!pos)
                return NULL;
        if (PyTuple_GET_SIZE(args) != 0) {
                Py_DECREF(pos);
                PyErr_SetString(PyExc_TypeError, "subscriber() takes keyword arguments only");
                return NULL;
        }
        r = PyObject_Call((PyObject *)&SubscriberType, pos, kwds);
        Py_DECREF(pos);
        return r;
}

static PyMethodDef channel_methods[] = {
        {"create", (PyCFunction)(void (*)(void))channel_create,
         METH_VARARGS | METH_KEYWORDS | METH_CLASS,
         "Channel.create(dir, name, *, capacity=None, max_msg=None, policy=None,\n"
         "               max_subscribers=None, max_publishers=None, mode=0o600) -> Channel\n\n"
         "Create a channel's files in a directory, without a daemon (tests, embedded use).\n"
         "Raises FileExistsError if it exists."},
        {"open", (PyCFunction)(void (*)(void))channel_open,
         METH_VARARGS | METH_KEYWORDS | METH_CLASS,
         "Channel.open(dir, name, *, publish=False, inspect=False) -> Channel\n\n"
         "Map an existing channel's files directly, without a daemon."},
        {"unlink", (PyCFunction)channel_unlink, METH_VARARGS | METH_STATIC,
         "Channel.unlink(dir, name) -> None\n\nRemove a channel's files; mappings live on."},
        {"publisher", (PyCFunction)channel_publisher, METH_NOARGS,
         "publisher() -> Publisher\n\nBecome a publisher (the channel must be opened with\n"
         "publish=True)."},
        {"subscriber", (PyCFunction)(void (*)(void))channel_subscriber,
         METH_VARARGS | METH_KEYWORDS,
         "subscriber(*, spin_us=None, untethered=False, history=0) -> Subscriber\n\n"
         "Become a subscriber; see Subscriber."},
        {"close", (PyCFunction)channel_close, METH_NOARGS,
         "close() -> None\n\nDrop this reference; publishers and subscribers keep their own."},
        {"__enter__", return_self, METH_NOARGS, NULL},
        {"__exit__", call_close, METH_VARARGS, NULL},
        {NULL, NULL, 0, NULL},
};

static PyObject *channel_get_name(ChannelObject *self, void *unused) {
        if (channel_check(self) < 0)
                return NULL;
        return PyUnicode_FromString(shmbus_channel_name(self->chan));
}

static PyObject *channel_get_max_msg(ChannelObject *self, void *unused) {
        if (channel_check(self) < 0)
                return NULL;
        return PyLong_FromSize_t(shmbus_channel_max_msg(self->chan));
}

static PyObject *channel_get_capacity(ChannelObject *self, void *unused) {
        if (channel_check(self) < 0)
                return NULL;
        return PyLong_FromUnsignedLongLong(shmbus_channel_capacity(self->chan));
}

static PyObject *channel_get_policy(ChannelObject *self, void *unused) {
        if (channel_check(self) < 0)
                return NULL;
        return PyUnicode_FromString(shmbus_channel_policy(self->chan) == SHMBUS_POLICY_OVERWRITE
                                            ? "overwrite"
                                            : "block");
}

static PyObject *channel_get_max_subscribers(ChannelObject *self, void *unused) {
        if (channel_check(self) < 0)
                return NULL;
        return PyLong_FromUnsignedLong(shmbus_channel_max_subscribers(self->chan));
}

static PyObject *channel_get_max_publishers(ChannelObject *self, void *unused) {
        if (channel_check(self) < 0)
                return NULL;
        return PyLong_FromUnsignedLong(shmbus_channel_max_publishers(self->chan));
}

static PyObject *channel_get_closed(ChannelObject *self, void *unused) {
        return PyBool_FromLong(!self->chan);
}

static PyGetSetDef channel_getset[] = {
        {"name", (getter)channel_get_name, NULL, "The channel's name.", NULL},
        {"max_msg", (getter)channel_get_max_msg, NULL, "The largest message, in bytes.", NULL},
        {"capacity", (getter)channel_get_capacity, NULL, "The ring's size in bytes.", NULL},
        {"policy", (getter)channel_get_policy, NULL, "\"block\" or \"overwrite\".", NULL},
        {"max_subscribers", (getter)channel_get_max_subscribers, NULL, "Subscriber slots.", NULL},
        {"max_publishers", (getter)channel_get_max_publishers, NULL, "Publisher slots.", NULL},
        {"closed", (getter)channel_get_closed, NULL, "True once close() was called.", NULL},
        {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *channel_repr(ChannelObject *self) {
        if (!self->chan)
                return PyUnicode_FromString("<shmbus.Channel closed>");
        return PyUnicode_FromFormat("<shmbus.Channel %s max_msg=%zu>",
                                    shmbus_channel_name(self->chan),
                                    shmbus_channel_max_msg(self->chan));
}

static PyTypeObject ChannelType = {
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmbus.Channel",
        .tp_basicsize = sizeof(ChannelObject),
        .tp_dealloc = (destructor)channel_dealloc,
        .tp_repr = (reprfunc)channel_repr,
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_doc = "A mapped channel: a ring of messages in shared memory.\n\n"
                  "Get one from Client.open(), or Channel.create()/Channel.open() without a\n"
                  "daemon. A context manager that closes it.",
        .tp_methods = channel_methods,
        .tp_getset = channel_getset,
};

/* ---- Publisher and Claim ---------------------------------------------------------------- */

enum { CLAIM_OPEN, CLAIM_COMMITTED, CLAIM_ABORTED };

typedef struct ClaimObject ClaimObject;

typedef struct {
        PyObject_HEAD shmbus_pub *pub;
        size_t max_msg;
        int busy;
        ClaimObject *claim; /* the open claim, borrowed: the claim clears it when it ends */
        int waitsets;       /* WaitSets it is in: the library's object must outlive them */
} PublisherObject;

struct ClaimObject {
        PyObject_HEAD PublisherObject *pub; /* strong */
        void *buf;
        Py_ssize_t len;
        Py_ssize_t exports;
        int state;
        PyObject *view_ref; /* a weak reference to the memoryview __enter__ gave out */
};

static int publisher_init(PublisherObject *self, PyObject *args, PyObject *kwds) {
        static const char *kwlist[] = {"channel", NULL};
        ChannelObject *ch;
        shmbus_pub *p;
        int r;

        if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!:Publisher", KW(kwlist), &ChannelType, &ch))
                return -1;
        if (channel_check(ch) < 0)
                return -1;
        if (self->pub) {
                PyErr_SetString(PyExc_RuntimeError, "Publisher is already initialised");
                return -1;
        }
        r = shmbus_pub_new(ch->chan, &p);
        if (r < 0) {
                PyObject *n = PyUnicode_FromString(shmbus_channel_name(ch->chan));

                raise_code(r, NULL, n);
                Py_XDECREF(n);
                return -1;
        }
        self->pub = p;
        self->max_msg = shmbus_channel_max_msg(ch->chan);
        return 0;
}

static void publisher_dealloc(PublisherObject *self) {
        /* A claim holds its publisher, so none is open here. */
        shmbus_pub_free(self->pub);
        Py_TYPE(self)->tp_free((PyObject *)self);
}

static int publisher_check(PublisherObject *self) {
        if (!self->pub)
                return closed_error("Publisher");
        if (self->busy)
                return busy_error("Publisher");
        return 0;
}

/* End an open claim: commit or abort. Refused while its memory is exported. */
static int claim_end(ClaimObject *self, bool commit) {
        int r;

        if (self->state != CLAIM_OPEN) {
                PyErr_SetString(PyExc_ValueError, self->state == CLAIM_COMMITTED
                                                          ? "the claim is already committed"
                                                          : "the claim is already aborted");
                return -1;
        }
        if (self->exports > 0) {
                PyErr_Format(PyExc_BufferError,
                             "%zd view(s) of the claimed space still exist: it stays open until "
                             "they are released, then commit() or abort() it",
                             self->exports);
                return -1;
        }
        r = commit ? shmbus_pub_commit(self->pub->pub) : shmbus_pub_abort(self->pub->pub);
        self->state = commit ? CLAIM_COMMITTED : CLAIM_ABORTED;
        self->pub->claim = NULL;
        if (r < 0) {
                raise_code(r, NULL, NULL);
                return -1;
        }
        return 0;
}

static int in_waitset_error(const char *what) {
        PyErr_Format(PyExc_RuntimeError, "the %s is in a WaitSet: remove it first", what);
        return -1;
}

static PyObject *publisher_close(PublisherObject *self, PyObject *unused) {
        if (self->busy) {
                busy_error("Publisher");
                return NULL;
        }
        if (self->waitsets) {
                in_waitset_error("Publisher");
                return NULL;
        }
        if (self->claim && claim_end(self->claim, false) < 0)
                return NULL;
        self->pub = shmbus_pub_free(self->pub);
        Py_RETURN_NONE;
}

struct send_ctx {
        shmbus_pub *pub;
        const void *data;
        size_t len;
        void *buf;
};

static int send_fn(void *ctx, int timeout_ms) {
        struct send_ctx *c = ctx;

        return shmbus_pub_send(c->pub, c->data, c->len, timeout_ms);
}

static int claim_fn(void *ctx, int timeout_ms) {
        struct send_ctx *c = ctx;

        return shmbus_pub_claim(c->pub, c->len, timeout_ms, &c->buf);
}

static PyObject *publisher_send(PublisherObject *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames) {
        PyObject *obj = NULL;
        struct send_ctx c;
        Py_buffer data;
        int64_t ns;
        int r;

        if (fast_args("send", 1, args, nargsf, kwnames, &obj, &ns) < 0 || publisher_check(self) < 0)
                return NULL;
        if (PyObject_GetBuffer(obj, &data, PyBUF_SIMPLE) < 0)
                return NULL;
        c = (struct send_ctx){.pub = self->pub, .data = data.buf, .len = (size_t)data.len};
        r = wait_call(&self->busy, send_fn, &c, ns);
        PyBuffer_Release(&data);
        if (r < 0)
                return raise_code(r, NULL, NULL);
        Py_RETURN_NONE;
}

static PyObject *publisher_claim(PublisherObject *self, PyObject *args, PyObject *kwds) {
        static const char *kwlist[] = {"size", "timeout", NULL};
        PyObject *timeout = Py_None;
        struct send_ctx c;
        ClaimObject *claim;
        Py_ssize_t n;
        int64_t ns;
        int r;

        if (!PyArg_ParseTupleAndKeywords(args, kwds, "n|O:claim", KW(kwlist), &n, &timeout))
                return NULL;
        if (publisher_check(self) < 0 || parse_timeout(timeout, &ns) < 0)
                return NULL;
        if (n <= 0) {
                PyErr_SetString(PyExc_ValueError, "size must be at least 1");
                return NULL;
        }
        claim = PyObject_New(ClaimObject, &ClaimType);
        if (!claim)
                return NULL;
        claim->pub = NULL;
        claim->view_ref = NULL;
        claim->exports = 0;
        claim->state = CLAIM_ABORTED;
        c = (struct send_ctx){.pub = self->pub, .len = (size_t)n};
        r = wait_call(&self->busy, claim_fn, &c, ns);
        if (r < 0) {
                Py_DECREF(claim);
                return raise_code(r, NULL, NULL);
        }
        claim->pub = (PublisherObject *)Py_NewRef(self);
        claim->buf = c.buf;
        claim->len = n;
        claim->state = CLAIM_OPEN;
        self->claim = claim;
        return (PyObject *)claim;
}

static PyObject *publisher_fileno(PublisherObject *self, PyObject *unused) {
        int fd;

        if (publisher_check(self) < 0)
                return NULL;
        fd = shmbus_pub_fd(self->pub);
        if (fd < 0)
                return raise_code(fd, NULL, NULL);
        return PyLong_FromLong(fd);
}

static PyObject *publisher_send_async(PyObject *self, PyObject *const *args, size_t nargsf,
                                      PyObject *kwnames) {
        return aio_method("send_async", self, args, nargsf, kwnames);
}

static PyObject *publisher_get_max_msg(PublisherObject *self, void *unused) {
        return PyLong_FromSize_t(self->max_msg);
}

static PyObject *publisher_get_closed(PublisherObject *self, void *unused) {
        return PyBool_FromLong(!self->pub);
}

static PyMethodDef publisher_methods[] = {
        {"send", (PyCFunction)(void (*)(void))publisher_send, METH_FASTCALL | METH_KEYWORDS,
         "send(data, timeout=None) -> None\n\n"
         "Copy one message (any bytes-like object, 1 to max_msg bytes) into the channel and\n"
         "publish it. timeout: seconds to wait for space on a full \"block\" channel (None:\n"
         "forever; 0: do not wait, raising BlockingIOError). Raises TimeoutError when the\n"
         "time runs out. The GIL is released while waiting."},
        {"claim", (PyCFunction)(void (*)(void))publisher_claim, METH_VARARGS | METH_KEYWORDS,
         "claim(size, timeout=None) -> Claim\n\n"
         "Reserve size bytes in the channel, to be written in place (zero copy):\n\n"
         "    with pub.claim(8) as buf:   # a writable memoryview\n"
         "        buf[:] = b\"12345678\"\n\n"
         "The block commits (publishes) on normal exit and aborts on an exception.\n"
         "Subscribers cannot read past an open claim: keep it short."},
        {"send_async", (PyCFunction)(void (*)(void))publisher_send_async,
         METH_FASTCALL | METH_KEYWORDS,
         "send_async(data, timeout=None) -> coroutine\n\n"
         "asyncio: send(), waiting for room on the publisher's descriptor (fileno())\n"
         "in the running loop instead of blocking it."},
        {"fileno", (PyCFunction)publisher_fileno, METH_NOARGS,
         "fileno() -> int\n\n"
         "A descriptor that polls readable when a send that raised BlockingIOError may\n"
         "succeed if tried again. Owned by the publisher: do not close it. It does not\n"
         "work in a child after fork()."},
        {"close", (PyCFunction)publisher_close, METH_NOARGS,
         "close() -> None\n\nLeave the channel; an open claim is aborted."},
        {"__enter__", return_self, METH_NOARGS, NULL},
        {"__exit__", call_close, METH_VARARGS, NULL},
        {NULL, NULL, 0, NULL},
};

static PyGetSetDef publisher_getset[] = {
        {"max_msg", (getter)publisher_get_max_msg, NULL, "The largest message, in bytes.", NULL},
        {"closed", (getter)publisher_get_closed, NULL, "True once close() was called.", NULL},
        {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PublisherType = {
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmbus.Publisher",
        .tp_basicsize = sizeof(PublisherObject),
        .tp_dealloc = (destructor)publisher_dealloc,
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_doc = "Publisher(channel)\n\n"
                  "Publishes messages on a channel opened with publish=True. Use from one\n"
                  "thread at a time. A context manager that closes it.",
        .tp_methods = publisher_methods,
        .tp_getset = publisher_getset,
        .tp_init = (initproc)publisher_init,
        .tp_new = PyType_GenericNew,
};

static int claim_getbuffer(ClaimObject *self, Py_buffer *view, int flags) {
        if (self->state != CLAIM_OPEN) {
                PyErr_SetString(PyExc_ValueError, "the claim has ended: its space is gone");
                view->obj = NULL;
                return -1;
        }
        if (PyBuffer_FillInfo(view, (PyObject *)self, self->buf, self->len, 0, flags) < 0)
                return -1;
        self->exports++;
        return 0;
}

static void claim_releasebuffer(ClaimObject *self, Py_buffer *view) {
        self->exports--;
}

static PyBufferProcs claim_as_buffer = {
        .bf_getbuffer = (getbufferproc)claim_getbuffer,
        .bf_releasebuffer = (releasebufferproc)claim_releasebuffer,
};

static void claim_dealloc(ClaimObject *self) {
        Py_CLEAR(self->view_ref);
        /* No export is left (each one holds a reference): an unfinished claim is aborted. */
        if (self->state == CLAIM_OPEN && self->pub && self->pub->pub) {
                shmbus_pub_abort(self->pub->pub);
                self->pub->claim = NULL;
        }
        Py_XDECREF(self->pub);
        Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *claim_commit(ClaimObject *self, PyObject *unused) {
        if (claim_end(self, true) < 0)
                return NULL;
        Py_RETURN_NONE;
}

static PyObject *claim_abort(ClaimObject *self, PyObject *unused) {
        if (claim_end(self, false) < 0)
                return NULL;
        Py_RETURN_NONE;
}

/*
 * The memoryview for a with block, made once. It is held weakly: a strong
 * reference would make a cycle (view -> exporter -> view) and cost the
 * exporter garbage-collector tracking on the hot path.
 */
static PyObject *enter_view(PyObject *self, PyObject **view_ref) {
        PyObject *view;

        if (*view_ref) {
                view = PyWeakref_GetObject(*view_ref);
                if (view && view != Py_None)
                        return Py_NewRef(view);
                Py_CLEAR(*view_ref);
        }
        view = PyMemoryView_FromObject(self);
        if (!view)
                return NULL;
        *view_ref = PyWeakref_NewRef(view, NULL);
        if (!*view_ref) {
                Py_DECREF(view);
                return NULL;
        }
        return view;
}

static PyObject *claim_enter(ClaimObject *self, PyObject *unused) {
        return enter_view((PyObject *)self, &self->view_ref);
}

/*
 * Release the memoryview __enter__ gave out, so that using it later raises
 * ValueError. If something was derived from it (a numpy array, a nested
 * memoryview), the memory stays exported and the caller refuses to end.
 */
static void release_view(PyObject **view_ref) {
        PyObject *view, *r;

        if (!*view_ref)
                return;
        view = PyWeakref_GetObject(*view_ref);
        if (view && view != Py_None) {
                r = PyObject_CallMethod(view, "release", NULL);
                if (r)
                        Py_DECREF(r);
        }
        PyErr_Clear();
        Py_CLEAR(*view_ref);
}

static PyObject *claim_exit(ClaimObject *self, PyObject *args) {
        PyObject *type = Py_None, *value, *tb;

        if (!PyArg_UnpackTuple(args, "__exit__", 0, 3, &type, &value, &tb))
                return NULL;
        release_view(&self->view_ref);
        if (self->state == CLAIM_OPEN && claim_end(self, type == Py_None) < 0)
                return NULL;
        Py_RETURN_FALSE;
}

static Py_ssize_t claim_length(ClaimObject *self) {
        return self->len;
}

static PySequenceMethods claim_as_sequence = {
        .sq_length = (lenfunc)claim_length,
};

static PyObject *claim_get_state(ClaimObject *self, void *unused) {
        static const char *names[] = {"open", "committed", "aborted"};

        return PyUnicode_FromString(names[self->state]);
}

static PyGetSetDef claim_getset[] = {
        {"state", (getter)claim_get_state, NULL, "\"open\", \"committed\" or \"aborted\".", NULL},
        {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef claim_methods[] = {
        {"commit", (PyCFunction)claim_commit, METH_NOARGS,
         "commit() -> None\n\nPublish the message. Raises BufferError while views of it exist."},
        {"abort", (PyCFunction)claim_abort, METH_NOARGS,
         "abort() -> None\n\nGive the space up; subscribers skip it. Raises BufferError while\n"
         "views of it exist."},
        {"__enter__", (PyCFunction)claim_enter, METH_NOARGS,
         "Return a writable memoryview of the claimed space."},
        {"__exit__", (PyCFunction)claim_exit, METH_VARARGS,
         "Release the view, then commit (normal exit) or abort (exception)."},
        {NULL, NULL, 0, NULL},
};

static PyTypeObject ClaimType = {
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmbus.Claim",
        .tp_basicsize = sizeof(ClaimObject),
        .tp_dealloc = (destructor)claim_dealloc,
        .tp_as_sequence = &claim_as_sequence,
        .tp_as_buffer = &claim_as_buffer,
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_doc = "Space claimed in a channel by Publisher.claim(), written in place.\n\n"
                  "Supports the buffer protocol (writable). As a context manager it gives a\n"
                  "memoryview and commits on normal exit, aborts on an exception. The space is\n"
                  "never given back while a view of it exists: commit()/abort() raise\n"
                  "BufferError then. Dropped unfinished, it is aborted.",
        .tp_methods = claim_methods,
        .tp_getset = claim_getset,
};

/* ---- Subscriber and Message ------------------------------------------------------------- */

typedef struct MessageObject MessageObject;

typedef struct {
        PyObject_HEAD shmbus_sub *sub;
        int busy;
        MessageObject *current; /* the borrowed message, borrowed: it clears this when released */
        int waitsets;           /* WaitSets it is in: the library's object must outlive them */
} SubscriberObject;

struct MessageObject {
        PyObject_HEAD SubscriberObject *sub; /* strong */
        const void *data;
        Py_ssize_t len;
        Py_ssize_t exports;
        uint64_t seq;
        bool released;
        PyObject *view_ref; /* a weak reference to the memoryview __enter__ gave out */
};

static int subscriber_init(SubscriberObject *self, PyObject *args, PyObject *kwds) {
        static const char *kwlist[] = {"channel", "spin_us", "untethered", "history", NULL};
        PyObject *spin = Py_None, *hist = NULL;
        unsigned long long history = 0;
        int untethered = 0, r;
        ChannelObject *ch;
        shmbus_sub *s;

        if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!|$OpO:Subscriber", KW(kwlist), &ChannelType,
                                         &ch, &spin, &untethered, &hist))
                return -1;
        if (given(hist)) {
                history = PyLong_AsUnsignedLongLong(hist);
                if (PyErr_Occurred())
                        return -1;
        }
        if (channel_check(ch) < 0)
                return -1;
        if (self->sub) {
                PyErr_SetString(PyExc_RuntimeError, "Subscriber is already initialised");
                return -1;
        }
        r = shmbus_sub_new_ex(ch->chan, untethered ? SHMBUS_SUB_UNTETHERED : 0, history, &s);
        if (r < 0) {
                PyObject *n = PyUnicode_FromString(shmbus_channel_name(ch->chan));

                raise_code(r, NULL, n);
                Py_XDECREF(n);
                return -1;
        }
        if (spin != Py_None) {
                unsigned long us = PyLong_AsUnsignedLong(spin);

                if (PyErr_Occurred() || us > UINT32_MAX) {
                        if (!PyErr_Occurred())
                                PyErr_SetString(PyExc_ValueError, "spin_us is out of range");
                        shmbus_sub_free(s);
                        return -1;
                }
                shmbus_sub_set_spin(s, (uint32_t)us);
        }
        self->sub = s;
        return 0;
}

static void subscriber_dealloc(SubscriberObject *self) {
        /* A message holds its subscriber, so none is borrowed here. */
        shmbus_sub_free(self->sub);
        Py_TYPE(self)->tp_free((PyObject *)self);
}

static int subscriber_check(SubscriberObject *self) {
        if (!self->sub)
                return closed_error("Subscriber");
        if (self->busy)
                return busy_error("Subscriber");
        return 0;
}

/*
 * Give a borrowed message back to the library. Refused while exported. With
 * @explicit, -ESTALE (overwritten while borrowed) raises StaleError; an
 * implicit release leaves it to the lost counter, where the library counts it.
 */
static int message_release(MessageObject *self, bool explicit) {
        int r;

        if (self->released)
                return 0;
        if (self->exports > 0) {
                PyErr_Format(PyExc_BufferError,
                             "%zd view(s) of the message still exist: it stays borrowed until "
                             "they are released",
                             self->exports);
                return -1;
        }
        self->released = true;
        self->sub->current = NULL;
        r = shmbus_sub_release(self->sub->sub);
        if (r < 0 && explicit) {
                raise_code(r, NULL, NULL);
                return -1;
        }
        return 0;
}

/* Before the next receive: the library would release the borrowed message by itself. */
static int subscriber_drop_current(SubscriberObject *self) {
        if (!self->current)
                return 0;
        if (self->current->exports > 0) {
                PyErr_Format(PyExc_BufferError,
                             "the message of the last peek() still has %zd view(s); release "
                             "them before receiving again",
                             self->current->exports);
                return -1;
        }
        return message_release(self->current, false);
}

struct peek_ctx {
        shmbus_sub *sub;
        const void *data;
        size_t len;
        void *buf;
        size_t size;
};

/* A corrupt record is skipped by the library; the next call goes on. */
static int peek_fn(void *ctx, int timeout_ms) {
        struct peek_ctx *c = ctx;
        int r;

        do
                r = shmbus_sub_peek(c->sub, &c->data, &c->len, timeout_ms);
        while (r == -EBADMSG);
        return r;
}

static int recv_fn(void *ctx, int timeout_ms) {
        struct peek_ctx *c = ctx;
        ssize_t r;

        do
                r = shmbus_sub_recv(c->sub, c->buf, c->size, timeout_ms);
        while (r == -EBADMSG);
        if (r >= 0)
                c->len = (size_t)r;
        return r < 0 ? (int)r : 0;
}

static PyObject *subscriber_recv_ns(SubscriberObject *self, int64_t ns) {
        struct peek_ctx c = {.sub = self->sub};
        PyObject *bytes;
        int r;

        if (subscriber_check(self) < 0 || subscriber_drop_current(self) < 0)
                return NULL;
        for (;;) {
                r = wait_call(&self->busy, peek_fn, &c, ns);
                if (r < 0)
                        return raise_code(r, NULL, NULL);
                bytes = PyBytes_FromStringAndSize(c.data, (Py_ssize_t)c.len);
                r = shmbus_sub_release(self->sub);
                if (r == -ESTALE) {
                        /* Overwritten while copied: the library counted it lost; take the next. */
                        Py_XDECREF(bytes);
                        continue;
                }
                return bytes;
        }
}

static PyObject *subscriber_recv(SubscriberObject *self, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames) {
        int64_t ns;

        if (fast_args("recv", 0, args, nargsf, kwnames, NULL, &ns) < 0)
                return NULL;
        return subscriber_recv_ns(self, ns);
}

static PyObject *subscriber_recv_into(SubscriberObject *self, PyObject *args, PyObject *kwds) {
        static const char *kwlist[] = {"buffer", "timeout", NULL};
        PyObject *timeout = Py_None;
        struct peek_ctx c = {.sub = self->sub};
        Py_buffer buf;
        int64_t ns;
        int r;

        if (!PyArg_ParseTupleAndKeywords(args, kwds, "w*|O:recv_into", KW(kwlist), &buf, &timeout))
                return NULL;
        if (subscriber_check(self) < 0 || parse_timeout(timeout, &ns) < 0 ||
            subscriber_drop_current(self) < 0) {
                PyBuffer_Release(&buf);
                return NULL;
        }
        c.buf = buf.buf;
        c.size = (size_t)buf.len;
        r = wait_call(&self->busy, recv_fn, &c, ns);
        PyBuffer_Release(&buf);
        if (r < 0)
                return raise_code(r, NULL, NULL);
        return PyLong_FromSize_t(c.len);
}

static PyObject *subscriber_peek(SubscriberObject *self, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames) {
        struct peek_ctx c = {.sub = self->sub};
        MessageObject *m;
        int64_t ns;
        int r;

        if (fast_args("peek", 0, args, nargsf, kwnames, NULL, &ns) < 0)
                return NULL;
        if (subscriber_check(self) < 0 || subscriber_drop_current(self) < 0)
                return NULL;
        r = wait_call(&self->busy, peek_fn, &c, ns);
        if (r < 0)
                return raise_code(r, NULL, NULL);
        m = PyObject_New(MessageObject, &MessageType);
        if (!m) {
                shmbus_sub_release(self->sub);
                return NULL;
        }
        m->view_ref = NULL;
        m->exports = 0;
        m->sub = (SubscriberObject *)Py_NewRef(self);
        m->data = c.data;
        m->len = (Py_ssize_t)c.len;
        m->seq = shmbus_sub_seq(self->sub);
        m->released = false;
        self->current = m;
        return (PyObject *)m;
}

static PyObject *subscriber_close(SubscriberObject *self, PyObject *unused) {
        if (self->busy) {
                busy_error("Subscriber");
                return NULL;
        }
        if (self->waitsets) {
                in_waitset_error("Subscriber");
                return NULL;
        }
        if (subscriber_drop_current(self) < 0)
                return NULL;
        self->sub = shmbus_sub_free(self->sub);
        Py_RETURN_NONE;
}

static PyObject *subscriber_set_spin(SubscriberObject *self, PyObject *arg) {
        unsigned long us = PyLong_AsUnsignedLong(arg);

        if (PyErr_Occurred())
                return NULL;
        if (us > UINT32_MAX) {
                PyErr_SetString(PyExc_ValueError, "spin_us is out of range");
                return NULL;
        }
        if (subscriber_check(self) < 0)
                return NULL;
        shmbus_sub_set_spin(self->sub, (uint32_t)us);
        Py_RETURN_NONE;
}

static PyObject *subscriber_iternext(SubscriberObject *self) {
        return subscriber_recv_ns(self, TIMEOUT_FOREVER);
}

static PyObject *subscriber_fileno(SubscriberObject *self, PyObject *unused) {
        int fd;

        if (subscriber_check(self) < 0)
                return NULL;
        fd = shmbus_sub_fd(self->sub);
        if (fd < 0)
                return raise_code(fd, NULL, NULL);
        return PyLong_FromLong(fd);
}

/*
 * A message that is there already comes back as a finished awaitable;
 * otherwise (BlockingIOError, which also re-armed the descriptor) the
 * coroutine in shmbus/_aio.py waits for it.
 */
static PyObject *recv_async_now(SubscriberObject *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames) {
        PyObject *msg;
        int64_t ns;

        if (fast_args("recv_async", 0, args, nargsf, kwnames, NULL, &ns) < 0)
                return NULL;
        if (!self->busy && self->sub) {
                msg = subscriber_recv_ns(self, 0);
                if (msg)
                        return ready_new(msg);
                if (!PyErr_ExceptionMatches(BlockingErr))
                        return NULL;
                PyErr_Clear();
        }
        return aio_method("recv_async", (PyObject *)self, args, nargsf, kwnames);
}

static PyObject *subscriber_recv_async(PyObject *self, PyObject *const *args, size_t nargsf,
                                       PyObject *kwnames) {
        return recv_async_now((SubscriberObject *)self, args, nargsf, kwnames);
}

static PyObject *subscriber_peek_async(PyObject *self, PyObject *const *args, size_t nargsf,
                                       PyObject *kwnames) {
        return aio_method("peek_async", self, args, nargsf, kwnames);
}

static PyObject *subscriber_anext(PyObject *self) {
        return recv_async_now((SubscriberObject *)self, NULL, 0, NULL);
}

static PyAsyncMethods subscriber_as_async = {
        .am_aiter = self_aiter,
        .am_anext = subscriber_anext,
};

static PyObject *subscriber_get_lost(SubscriberObject *self, void *unused) {
        return PyLong_FromUnsignedLongLong(shmbus_sub_lost(self->sub));
}

static PyObject *subscriber_get_received(SubscriberObject *self, void *unused) {
        return PyLong_FromUnsignedLongLong(shmbus_sub_received(self->sub));
}

/* UINT64_MAX (nothing received yet) as None. */
static PyObject *seq_object(uint64_t seq) {
        if (seq == UINT64_MAX)
                Py_RETURN_NONE;
        return PyLong_FromUnsignedLongLong(seq);
}

static PyObject *subscriber_get_seq(SubscriberObject *self, void *unused) {
        return seq_object(shmbus_sub_seq(self->sub));
}

static PyObject *subscriber_get_closed(SubscriberObject *self, void *unused) {
        return PyBool_FromLong(!self->sub);
}

static PyMethodDef subscriber_methods[] = {
        {"recv", (PyCFunction)(void (*)(void))subscriber_recv, METH_FASTCALL | METH_KEYWORDS,
         "recv(timeout=None) -> bytes\n\n"
         "Receive the next message, copied. timeout in seconds: None waits forever, 0 does\n"
         "not wait (raising BlockingIOError); when it runs out, TimeoutError. The GIL is\n"
         "released while waiting."},
        {"recv_into", (PyCFunction)(void (*)(void))subscriber_recv_into,
         METH_VARARGS | METH_KEYWORDS,
         "recv_into(buffer, timeout=None) -> int\n\n"
         "Copy the next message into a writable buffer; return its length. If the buffer\n"
         "is too small, raises shmbus.Error (EMSGSIZE) and the message stays."},
        {"peek", (PyCFunction)(void (*)(void))subscriber_peek, METH_FASTCALL | METH_KEYWORDS,
         "peek(timeout=None) -> Message\n\n"
         "Borrow the next message in shared memory (zero copy):\n\n"
         "    with sub.peek() as view:    # a read-only memoryview\n"
         "        handle(view)\n\n"
         "The message is given back at the end of the block, or by the next recv()/peek().\n"
         "Neither happens while views of it exist (BufferError)."},
        {"recv_async", (PyCFunction)(void (*)(void))subscriber_recv_async,
         METH_FASTCALL | METH_KEYWORDS,
         "recv_async(timeout=None) -> coroutine\n\n"
         "asyncio: await the next message as bytes, waiting on the subscriber's\n"
         "descriptor (fileno()) in the running loop. `async for msg in sub` does the\n"
         "same. One task per subscriber at a time (RuntimeError otherwise)."},
        {"peek_async", (PyCFunction)(void (*)(void))subscriber_peek_async,
         METH_FASTCALL | METH_KEYWORDS,
         "peek_async(timeout=None) -> coroutine\n\n"
         "asyncio: await the next message borrowed (a Message, as peek() gives)."},
        {"fileno", (PyCFunction)subscriber_fileno, METH_NOARGS,
         "fileno() -> int\n\n"
         "A descriptor that polls readable when a message is available, for event\n"
         "loops (select, selectors, asyncio's add_reader). When it is readable, receive\n"
         "with timeout=0 until BlockingIOError: that re-arms it. Spurious wake-ups\n"
         "happen (the receive raises BlockingIOError). Owned by the subscriber: do not\n"
         "close it. It does not work in a child after fork()."},
        {"set_spin", (PyCFunction)subscriber_set_spin, METH_O,
         "set_spin(us) -> None\n\nMicroseconds to poll before sleeping (default 50; 0 sleeps\n"
         "at once)."},
        {"close", (PyCFunction)subscriber_close, METH_NOARGS,
         "close() -> None\n\nLeave the channel (a blocking channel stops waiting for this\n"
         "subscriber). Raises BufferError while a peeked message is exported."},
        {"__enter__", return_self, METH_NOARGS, NULL},
        {"__exit__", call_close, METH_VARARGS, NULL},
        {NULL, NULL, 0, NULL},
};

static PyGetSetDef subscriber_getset[] = {
        {"lost", (getter)subscriber_get_lost, NULL,
         "Messages this subscriber missed (overwritten before it read them, or whose\n"
         "publisher died mid-claim). Never decreases.",
         NULL},
        {"received", (getter)subscriber_get_received, NULL,
         "Messages this subscriber has received.", NULL},
        {"seq", (getter)subscriber_get_seq, NULL,
         "The channel-wide number of the message last received (or borrowed), None before\n"
         "the first. Numbers have no gaps: a jump means the ones between were lost.",
         NULL},
        {"closed", (getter)subscriber_get_closed, NULL, "True once close() was called.", NULL},
        {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SubscriberType = {
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmbus.Subscriber",
        .tp_basicsize = sizeof(SubscriberObject),
        .tp_dealloc = (destructor)subscriber_dealloc,
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_doc = "Subscriber(channel, *, spin_us=None)\n\n"
                  "Receives every message published on the channel from now on, in order.\n"
                  "Iterating over it yields each message as bytes, waiting forever; so does\n"
                  "`async for` in asyncio. Use from one thread (or task) at a time. A context\n"
                  "manager that closes it.",
        .tp_as_async = &subscriber_as_async,
        .tp_iter = PyObject_SelfIter,
        .tp_iternext = (iternextfunc)subscriber_iternext,
        .tp_methods = subscriber_methods,
        .tp_getset = subscriber_getset,
        .tp_init = (initproc)subscriber_init,
        .tp_new = PyType_GenericNew,
};

static int message_getbuffer(MessageObject *self, Py_buffer *view, int flags) {
        if (self->released) {
                PyErr_SetString(PyExc_ValueError, "the message was released: its memory is gone");
                view->obj = NULL;
                return -1;
        }
        if (PyBuffer_FillInfo(view, (PyObject *)self, (void *)self->data, self->len, 1, flags) < 0)
                return -1;
        self->exports++;
        return 0;
}

static void message_releasebuffer(MessageObject *self, Py_buffer *view) {
        self->exports--;
}

static PyBufferProcs message_as_buffer = {
        .bf_getbuffer = (getbufferproc)message_getbuffer,
        .bf_releasebuffer = (releasebufferproc)message_releasebuffer,
};

static void message_dealloc(MessageObject *self) {
        Py_CLEAR(self->view_ref);
        if (!self->released && self->sub && self->sub->sub)
                message_release(self, false);
        Py_XDECREF(self->sub);
        Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *message_release_method(MessageObject *self, PyObject *unused) {
        if (message_release(self, true) < 0)
                return NULL;
        Py_RETURN_NONE;
}

static PyObject *message_tobytes(MessageObject *self, PyObject *unused) {
        if (self->released) {
                PyErr_SetString(PyExc_ValueError, "the message was released: its memory is gone");
                return NULL;
        }
        return PyBytes_FromStringAndSize(self->data, self->len);
}

static PyObject *message_enter(MessageObject *self, PyObject *unused) {
        return enter_view((PyObject *)self, &self->view_ref);
}

static PyObject *message_exit(MessageObject *self, PyObject *args) {
        release_view(&self->view_ref);
        if (message_release(self, true) < 0)
                return NULL;
        Py_RETURN_FALSE;
}

static Py_ssize_t message_length(MessageObject *self) {
        return self->len;
}

static PySequenceMethods message_as_sequence = {
        .sq_length = (lenfunc)message_length,
};

static PyObject *message_get_released(MessageObject *self, void *unused) {
        return PyBool_FromLong(self->released);
}

static PyObject *message_get_seq(MessageObject *self, void *unused) {
        return seq_object(self->seq);
}

static PyGetSetDef message_getset[] = {
        {"seq", (getter)message_get_seq, NULL, "The message's channel-wide number.", NULL},
        {"released", (getter)message_get_released, NULL,
         "True once the message was given back; its memory may be reused.", NULL},
        {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef message_methods[] = {
        {"release", (PyCFunction)message_release_method, METH_NOARGS,
         "release() -> None\n\n"
         "Give the message back. Raises BufferError while views of it exist, and\n"
         "StaleError if, on an \"overwrite\" channel, a publisher overwrote it while it was\n"
         "borrowed: what was read from it must be dropped."},
        {"tobytes", (PyCFunction)message_tobytes, METH_NOARGS,
         "tobytes() -> bytes\n\nA copy of the message."},
        {"__bytes__", (PyCFunction)message_tobytes, METH_NOARGS, NULL},
        {"__enter__", (PyCFunction)message_enter, METH_NOARGS,
         "Return a read-only memoryview of the message."},
        {"__exit__", (PyCFunction)message_exit, METH_VARARGS,
         "Release the view, then the message."},
        {NULL, NULL, 0, NULL},
};

static PyTypeObject MessageType = {
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmbus.Message",
        .tp_basicsize = sizeof(MessageObject),
        .tp_dealloc = (destructor)message_dealloc,
        .tp_as_sequence = &message_as_sequence,
        .tp_as_buffer = &message_as_buffer,
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_doc = "A message borrowed from shared memory by Subscriber.peek().\n\n"
                  "Supports the buffer protocol (read-only), so memoryview(msg) or\n"
                  "numpy.frombuffer(msg) read it without a copy. It is never given back while\n"
                  "such a view exists; once given back, new views raise ValueError.",
        .tp_methods = message_methods,
        .tp_getset = message_getset,
};

/* ---- WaitSet ---------------------------------------------------------------------------- */

/*
 * The library names members by a userdata pointer: here the member object's
 * address. The dict keeps each member alive while it is in the set, and maps
 * the addresses shmbus_waitset_wait() reports back to the objects.
 */
typedef struct {
        PyObject_HEAD shmbus_waitset *ws;
        PyObject *members; /* {address (int): member} */
        int busy;
} WaitSetObject;

#define WAITSET_BATCH 64 /* the most shmbus_waitset_wait() reports per call */

static int waitset_init(WaitSetObject *self, PyObject *args, PyObject *kwds) {
        shmbus_waitset *ws;
        int r;

        if (!PyArg_ParseTuple(args, ":WaitSet") || (kwds && PyDict_Size(kwds))) {
                if (!PyErr_Occurred())
                        PyErr_SetString(PyExc_TypeError, "WaitSet() takes no arguments");
                return -1;
        }
        if (self->ws) {
                PyErr_SetString(PyExc_RuntimeError, "WaitSet is already initialised");
                return -1;
        }
        r = shmbus_waitset_new(&ws);
        if (r < 0) {
                raise_code(r, NULL, NULL);
                return -1;
        }
        self->members = PyDict_New();
        if (!self->members) {
                shmbus_waitset_free(ws);
                return -1;
        }
        self->ws = ws;
        return 0;
}

static void member_count(PyObject *obj, int delta) {
        if (PyObject_TypeCheck(obj, &SubscriberType))
                ((SubscriberObject *)obj)->waitsets += delta;
        else if (PyObject_TypeCheck(obj, &PublisherType))
                ((PublisherObject *)obj)->waitsets += delta;
}

/* Free the library's set first (it does not touch members), then let go of the members. */
static void waitset_drop(WaitSetObject *self) {
        PyObject *key, *value;
        Py_ssize_t pos = 0;

        self->ws = shmbus_waitset_free(self->ws);
        if (!self->members)
                return;
        while (PyDict_Next(self->members, &pos, &key, &value))
                member_count(value, -1);
        Py_CLEAR(self->members);
}

static void waitset_dealloc(WaitSetObject *self) {
        waitset_drop(self);
        Py_TYPE(self)->tp_free((PyObject *)self);
}

static int waitset_check(WaitSetObject *self) {
        if (!self->ws)
                return closed_error("WaitSet");
        if (self->busy)
                return busy_error("WaitSet");
        return 0;
}

static PyObject *waitset_add(WaitSetObject *self, PyObject *args, PyObject *kwds) {
        static const char *kwlist[] = {"member", "events", NULL};
        unsigned int events = POLLIN;
        PyObject *obj, *key;
        int r;

        if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|I:add", KW(kwlist), &obj, &events) ||
            waitset_check(self) < 0)
                return NULL;
        if (PyObject_TypeCheck(obj, &SubscriberType)) {
                SubscriberObject *sub = (SubscriberObject *)obj;

                if (subscriber_check(sub) < 0)
                        return NULL;
                r = shmbus_waitset_add_sub(self->ws, sub->sub, obj);
        } else if (PyObject_TypeCheck(obj, &PublisherType)) {
                PublisherObject *pub = (PublisherObject *)obj;

                if (publisher_check(pub) < 0)
                        return NULL;
                r = shmbus_waitset_add_pub(self->ws, pub->pub, obj);
        } else {
                int fd = PyObject_AsFileDescriptor(obj);

                if (fd < 0)
                        return NULL;
                r = shmbus_waitset_add_fd(self->ws, fd, events, obj);
        }
        if (r < 0)
                return raise_code(r, NULL, NULL);
        key = PyLong_FromVoidPtr(obj);
        if (!key || PyDict_SetItem(self->members, key, obj) < 0) {
                Py_XDECREF(key);
                shmbus_waitset_remove(self->ws, obj);
                return NULL;
        }
        Py_DECREF(key);
        member_count(obj, +1);
        Py_RETURN_NONE;
}

static PyObject *waitset_remove(WaitSetObject *self, PyObject *obj) {
        PyObject *key;
        int r;

        if (waitset_check(self) < 0)
                return NULL;
        key = PyLong_FromVoidPtr(obj);
        if (!key)
                return NULL;
        r = PyDict_Contains(self->members, key);
        if (r <= 0) {
                Py_DECREF(key);
                if (r == 0)
                        PyErr_SetString(PyExc_KeyError, "not in this WaitSet");
                return NULL;
        }
        shmbus_waitset_remove(self->ws, obj);
        member_count(obj, -1);
        r = PyDict_DelItem(self->members, key);
        Py_DECREF(key);
        if (r < 0)
                return NULL;
        Py_RETURN_NONE;
}

struct waitset_ctx {
        shmbus_waitset *ws;
        void *ready[WAITSET_BATCH];
};

/* A signal handler that ran is a slice that ended: wait_call() looks at signals then. */
static int waitset_fn(void *ctx, int timeout_ms) {
        struct waitset_ctx *c = ctx;
        int r = shmbus_waitset_wait(c->ws, c->ready, WAITSET_BATCH, timeout_ms);

        return r == -EINTR ? -ETIMEDOUT : r;
}

static PyObject *waitset_wait(WaitSetObject *self, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames) {
        struct waitset_ctx c;
        PyObject *list;
        int64_t ns;
        int r;

        if (fast_args("wait", 0, args, nargsf, kwnames, NULL, &ns) < 0 || waitset_check(self) < 0)
                return NULL;
        c.ws = self->ws;
        r = wait_call(&self->busy, waitset_fn, &c, ns);
        if (r < 0)
                return raise_code(r, NULL, NULL);
        list = PyList_New(0);
        for (int i = 0; list && i < r; i++) {
                PyObject *key = PyLong_FromVoidPtr(c.ready[i]);
                PyObject *member = key ? PyDict_GetItemWithError(self->members, key) : NULL;

                Py_XDECREF(key);
                if (member && PyList_Append(list, member) < 0)
                        Py_CLEAR(list);
                else if (!member && PyErr_Occurred())
                        Py_CLEAR(list);
        }
        return list;
}

static PyObject *waitset_fileno(WaitSetObject *self, PyObject *unused) {
        int fd;

        if (!self->ws) {
                closed_error("WaitSet");
                return NULL;
        }
        fd = shmbus_waitset_fd(self->ws);
        if (fd < 0)
                return raise_code(fd, NULL, NULL);
        return PyLong_FromLong(fd);
}

static PyObject *waitset_close(WaitSetObject *self, PyObject *unused) {
        if (self->busy) {
                busy_error("WaitSet");
                return NULL;
        }
        waitset_drop(self);
        Py_RETURN_NONE;
}

static Py_ssize_t waitset_length(WaitSetObject *self) {
        return self->members ? PyDict_Size(self->members) : 0;
}

static PySequenceMethods waitset_as_sequence = {
        .sq_length = (lenfunc)waitset_length,
};

static PyMethodDef waitset_methods[] = {
        {"add", (PyCFunction)(void (*)(void))waitset_add, METH_VARARGS | METH_KEYWORDS,
         "add(member, events=select.POLLIN) -> None\n\n"
         "Watch a Subscriber (ready when it has messages), a Publisher (ready when a send\n"
         "that raised BlockingIOError may succeed), or any descriptor or object with\n"
         "fileno() (ready as poll() says for events). The set holds the member; a\n"
         "Subscriber or Publisher cannot be closed while it is in a set."},
        {"remove", (PyCFunction)waitset_remove, METH_O,
         "remove(member) -> None\n\nStop watching a member (KeyError if it is not in the set)."},
        {"wait", (PyCFunction)(void (*)(void))waitset_wait, METH_FASTCALL | METH_KEYWORDS,
         "wait(timeout=None) -> list\n\n"
         "Wait until members are ready and return them (at most 64 per call). Then\n"
         "receive from each ready Subscriber with timeout=0 until BlockingIOError,\n"
         "which re-arms it. timeout as elsewhere: None forever, 0 BlockingIOError at\n"
         "once, else TimeoutError. The GIL is released while waiting."},
        {"fileno", (PyCFunction)waitset_fileno, METH_NOARGS,
         "fileno() -> int\n\nReadable while any member is ready: to nest the set in another\n"
         "loop; then call wait(0)."},
        {"close", (PyCFunction)waitset_close, METH_NOARGS,
         "close() -> None\n\nFree the set; its members are let go, not closed."},
        {"__enter__", return_self, METH_NOARGS, NULL},
        {"__exit__", call_close, METH_VARARGS, NULL},
        {NULL, NULL, 0, NULL},
};

static PyTypeObject WaitSetType = {
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmbus.WaitSet",
        .tp_basicsize = sizeof(WaitSetObject),
        .tp_dealloc = (destructor)waitset_dealloc,
        .tp_as_sequence = &waitset_as_sequence,
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_doc = "WaitSet()\n\n"
                  "One thread waits for many subscribers, publishers and descriptors:\n\n"
                  "    with shmbus.WaitSet() as ws:\n"
                  "        ws.add(sub_a); ws.add(sub_b)\n"
                  "        for sub in ws.wait():\n"
                  "            while True:\n"
                  "                try:\n"
                  "                    handle(sub.recv(0))\n"
                  "                except BlockingIOError:\n"
                  "                    break\n\n"
                  "Use from one thread at a time. A context manager that closes it.",
        .tp_methods = waitset_methods,
        .tp_init = (initproc)waitset_init,
        .tp_new = PyType_GenericNew,
};

/* ---- the module ------------------------------------------------------------------------- */

static PyObject *mod_version(PyObject *unused, PyObject *unused2) {
        return PyUnicode_FromString(shmbus_version());
}

static PyObject *mod_strerror(PyObject *unused, PyObject *arg) {
        long e = PyLong_AsLong(arg);

        if (e == -1 && PyErr_Occurred())
                return NULL;
        return PyUnicode_FromString(shmbus_strerror(e > 0 ? -(int)(e & 0xffff) : (int)e));
}

static PyMethodDef module_methods[] = {
        {"library_version", mod_version, METH_NOARGS,
         "library_version() -> str\n\nThe version of the libshmbus loaded at run time."},
        {"strerror", mod_strerror, METH_O,
         "strerror(code) -> str\n\nThe library's wording for an errno code (either sign)."},
        {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
        PyModuleDef_HEAD_INIT,
        .m_name = "shmbus._shmbus",
        .m_doc = "The C part of the shmbus package; import shmbus instead.",
        .m_size = -1,
        .m_methods = module_methods,
};

static int add_type(PyObject *m, PyTypeObject *t, const char *name) {
        if (PyType_Ready(t) < 0)
                return -1;
        return PyModule_AddObjectRef(m, name, (PyObject *)t);
}

PyMODINIT_FUNC PyInit__shmbus(void);

PyMODINIT_FUNC PyInit__shmbus(void) {
        PyObject *m = PyModule_Create(&module_def), *hist;

        if (!m)
                return NULL;
        hist = PyLong_FromUnsignedLongLong(SHMBUS_SUB_HISTORY_ALL);
        if (!hist)
                goto err;
        Error = PyErr_NewExceptionWithDoc(
                "shmbus.Error",
                "Base of shmbus's errors: an OSError with errno, strerror (the daemon's\n"
                "explanation where it gave one) and filename (the channel, if any).",
                PyExc_OSError, NULL);
        if (!Error)
                goto err;
        PermissionErr = new_error("shmbus.PermissionError", PyExc_PermissionError,
                                  "Refused by the daemon's policy or the file mode (EACCES).");
        TimeoutErr = new_error("shmbus.TimeoutError", PyExc_TimeoutError,
                               "The timeout ran out (ETIMEDOUT).");
        NotFoundErr = new_error("shmbus.FileNotFoundError", PyExc_FileNotFoundError,
                                "No such channel, or no daemon at the socket (ENOENT).");
        ExistsErr = new_error("shmbus.FileExistsError", PyExc_FileExistsError,
                              "The channel exists already (EEXIST).");
        BlockingErr = new_error("shmbus.BlockingIOError", PyExc_BlockingIOError,
                                "Nothing to receive, or no space, and timeout=0 (EAGAIN).");
        ConnectionErr = new_error("shmbus.ConnectionError", PyExc_ConnectionError,
                                  "The daemon is not running or went away.");
        StaleErr = new_error("shmbus.StaleError", NULL,
                             "An \"overwrite\" channel's publisher overwrote a borrowed message "
                             "(ESTALE).");
        if (!PermissionErr || !TimeoutErr || !NotFoundErr || !ExistsErr || !BlockingErr ||
            !ConnectionErr || !StaleErr)
                goto err;
        if (PyModule_AddObjectRef(m, "Error", Error) < 0 ||
            PyModule_AddObjectRef(m, "PermissionError", PermissionErr) < 0 ||
            PyModule_AddObjectRef(m, "TimeoutError", TimeoutErr) < 0 ||
            PyModule_AddObjectRef(m, "FileNotFoundError", NotFoundErr) < 0 ||
            PyModule_AddObjectRef(m, "FileExistsError", ExistsErr) < 0 ||
            PyModule_AddObjectRef(m, "BlockingIOError", BlockingErr) < 0 ||
            PyModule_AddObjectRef(m, "ConnectionError", ConnectionErr) < 0 ||
            PyModule_AddObjectRef(m, "StaleError", StaleErr) < 0)
                goto err;
        if (add_type(m, &ClientType, "Client") < 0 || add_type(m, &ChannelType, "Channel") < 0 ||
            add_type(m, &PublisherType, "Publisher") < 0 || add_type(m, &ClaimType, "Claim") < 0 ||
            add_type(m, &SubscriberType, "Subscriber") < 0 ||
            add_type(m, &MessageType, "Message") < 0 || add_type(m, &WaitSetType, "WaitSet") < 0 ||
            PyType_Ready(&ReadyType) < 0)
                goto err;
        if (PyModule_AddStringConstant(m, "__version__", SHMBUS_VERSION_STRING) < 0 ||
            PyModule_AddStringConstant(m, "DEFAULT_SOCKET", SHMBUS_DEFAULT_SOCKET) < 0 ||
            PyModule_AddStringConstant(m, "POLICY_BLOCK", "block") < 0 ||
            PyModule_AddStringConstant(m, "POLICY_OVERWRITE", "overwrite") < 0 ||
            PyModule_AddObjectRef(m, "HISTORY_ALL", hist) < 0)
                goto err;
        Py_DECREF(hist);
        return m;
err:
        Py_XDECREF(hist);
        Py_DECREF(m);
        return NULL;
}
