/* SPDX-License-Identifier: MIT */
/*
 * libshmbus: publish and receive messages through shared memory.
 *
 * A channel is a ring of variable-size messages that every subscriber reads in
 * publish order. After setup, publishing and receiving are loads, stores and
 * atomics on shared memory: no system call per message. Futexes wake sleeping
 * readers and blocked publishers.
 *
 * Conventions: functions that can fail return an int, >= 0 on success and a
 * negative errno code on failure; errno itself is not part of the contract.
 * Out-parameters come last, are named ret_*, and are untouched on failure.
 * Timeouts are in milliseconds: 0 means do not wait, -1 means wait forever.
 *
 * Threads: one shmbus_pub or shmbus_sub must not be used from two threads at
 * once; distinct objects, even on the same channel, may be used concurrently.
 */
#ifndef SHMBUS_H
#define SHMBUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SHMBUS_EXPORT __attribute__((visibility("default")))
#else
#define SHMBUS_EXPORT
#endif

#define SHMBUS_VERSION_MAJOR 0
#define SHMBUS_VERSION_MINOR 1
#define SHMBUS_VERSION_PATCH 0

/* Slow-subscriber policies (shmbus_opts_set_policy). */
#define SHMBUS_POLICY_BLOCK     0 /* lossless: publishers wait for the slowest subscriber */
#define SHMBUS_POLICY_OVERWRITE 1 /* publishers never wait for subscribers; lapped ones count losses */

/* Flags for shmbus_channel_open() and shmbus_channel_from_fds(). */
#define SHMBUS_OPEN_PUBLISH 0x1 /* map the data read-write so publishers can be made */
#define SHMBUS_OPEN_INSPECT 0x2 /* map everything read-only: counters only, no pub/sub */
#define SHMBUS_OPEN_CREATE  0x4 /* shmbus_client_open(): create the channel if it is missing */

/* The daemon's socket when none is given and $SHMBUS_SOCKET is unset. */
#define SHMBUS_DEFAULT_SOCKET "/run/shmbus/shmbusd.sock"

typedef struct shmbus_opts shmbus_opts;
typedef struct shmbus_channel shmbus_channel;
typedef struct shmbus_pub shmbus_pub;
typedef struct shmbus_sub shmbus_sub;
typedef struct shmbus_client shmbus_client;

/**
 * shmbus_version() - the library's version as "MAJOR.MINOR.PATCH".
 *
 * Lifetime: a static string.
 * Return: never NULL.
 */
SHMBUS_EXPORT const char *shmbus_version(void);

/**
 * shmbus_strerror() - a short description of a negative error code.
 * @err: a value returned by a libshmbus function (negative errno), or 0.
 *
 * Lifetime: a static string.
 * Return: never NULL; shmbus-specific wording where the code has a
 * shmbus-specific meaning (-ESTALE, -EPROTO, -EUSERS, ...).
 */
SHMBUS_EXPORT const char *shmbus_strerror(int err);

/**
 * shmbus_opts_new() - make channel options holding the defaults.
 * @ret_opts: receives the options.
 *
 * Defaults: 1 MiB ring, 64 KiB largest message, SHMBUS_POLICY_BLOCK, 16
 * subscribers, 16 publishers.
 *
 * Lifetime: the caller owns the result; free it with shmbus_opts_free().
 * Return: 0, or -ENOMEM.
 */
SHMBUS_EXPORT int shmbus_opts_new(shmbus_opts **ret_opts);

/**
 * shmbus_opts_free() - free options.
 * @opts: options, or NULL.
 *
 * Return: NULL.
 */
SHMBUS_EXPORT shmbus_opts *shmbus_opts_free(shmbus_opts *opts);

/**
 * shmbus_opts_set_capacity() - the ring's size in bytes.
 * @opts: options.
 * @bytes: a power of two from 4 KiB to 1 GiB. Each message takes its length
 *         plus a 16-byte header, rounded up to 16. Unless set explicitly, the
 *         largest message follows: a quarter of this, at most 64 KiB.
 *
 * Return: 0, or -EINVAL.
 */
SHMBUS_EXPORT int shmbus_opts_set_capacity(shmbus_opts *opts, uint64_t bytes);

/**
 * shmbus_opts_set_max_msg() - the largest message a publisher may send.
 * @opts: options.
 * @bytes: 1 up to a quarter of the capacity (checked when the channel is made).
 *
 * Return: 0, or -EINVAL.
 */
SHMBUS_EXPORT int shmbus_opts_set_max_msg(shmbus_opts *opts, uint32_t bytes);

/**
 * shmbus_opts_set_policy() - what happens when a subscriber falls a ring behind.
 * @opts: options.
 * @policy: SHMBUS_POLICY_BLOCK or SHMBUS_POLICY_OVERWRITE.
 *
 * Return: 0, or -EINVAL.
 */
SHMBUS_EXPORT int shmbus_opts_set_policy(shmbus_opts *opts, int policy);

/**
 * shmbus_opts_set_max_subscribers() - subscriber slots in the channel.
 * @opts: options.
 * @n: 1 to 1024.
 *
 * Return: 0, or -EINVAL.
 */
SHMBUS_EXPORT int shmbus_opts_set_max_subscribers(shmbus_opts *opts, uint32_t n);

/**
 * shmbus_opts_set_max_publishers() - publisher slots in the channel.
 * @opts: options.
 * @n: 1 to 1024.
 *
 * Return: 0, or -EINVAL.
 */
SHMBUS_EXPORT int shmbus_opts_set_max_publishers(shmbus_opts *opts, uint32_t n);

/**
 * shmbus_channel_create() - create a channel's files in a directory and map them.
 * @dir: the shm directory (for example "/dev/shm/shmbus").
 * @name: 1 to 63 bytes of [A-Za-z0-9._-], not starting with '.'.
 * @opts: geometry and policy, or NULL for the defaults.
 * @mode: file mode bits for the channel files (for example 0600).
 * @ret_chan: receives the channel, mapped for publishing.
 *
 * The files are fully allocated up front, so a full file system fails here
 * with -ENOSPC and never later with SIGBUS. Services normally get channels
 * from shmbusd instead; this is the building block it uses.
 *
 * Lifetime: the caller owns one reference; drop it with shmbus_channel_unref().
 * Return: 0, -EINVAL (bad name or options), -EEXIST, -ENOSPC, -ENOMEM, or
 * another negative errno from the file system.
 */
SHMBUS_EXPORT int shmbus_channel_create(const char *dir, const char *name,
                                        const shmbus_opts *opts, unsigned int mode,
                                        shmbus_channel **ret_chan);

/**
 * shmbus_channel_open() - map an existing channel's files.
 * @dir: the shm directory.
 * @name: the channel name.
 * @flags: 0 (subscribe only), SHMBUS_OPEN_PUBLISH, or SHMBUS_OPEN_INSPECT.
 * @ret_chan: receives the channel.
 *
 * Every header field is validated; a file that is not a channel, or of an
 * unknown layout version, is refused.
 *
 * Lifetime: the caller owns one reference; drop it with shmbus_channel_unref().
 * Return: 0, -EINVAL, -ENOENT, -EACCES, -EPROTO (not a valid channel), -ENOMEM.
 */
SHMBUS_EXPORT int shmbus_channel_open(const char *dir, const char *name, int flags,
                                      shmbus_channel **ret_chan);

/**
 * shmbus_channel_from_fds() - map a channel from its two file descriptors.
 * @ctl_fd: the channel's control file.
 * @data_fd: the channel's data file (read-only is enough to subscribe).
 * @flags: as for shmbus_channel_open().
 * @ret_chan: receives the channel.
 *
 * The descriptors are not consumed: the channel keeps only its mappings.
 *
 * Lifetime: the caller owns one reference; drop it with shmbus_channel_unref().
 * Return: 0, -EINVAL, -EACCES, -EPROTO, -ENOMEM.
 */
SHMBUS_EXPORT int shmbus_channel_from_fds(int ctl_fd, int data_fd, int flags,
                                          shmbus_channel **ret_chan);

/**
 * shmbus_channel_ref() - take another reference.
 * @chan: a channel, or NULL.
 *
 * Return: @chan.
 */
SHMBUS_EXPORT shmbus_channel *shmbus_channel_ref(shmbus_channel *chan);

/**
 * shmbus_channel_unref() - drop a reference; the last one unmaps the channel.
 * @chan: a channel, or NULL.
 *
 * Publishers and subscribers hold their own reference, so the channel may be
 * dropped before them.
 *
 * Return: NULL.
 */
SHMBUS_EXPORT shmbus_channel *shmbus_channel_unref(shmbus_channel *chan);

/**
 * shmbus_channel_unlink() - remove a channel's files from a directory.
 * @dir: the shm directory.
 * @name: the channel name.
 *
 * Processes that have the channel mapped keep using it until they let go.
 *
 * Return: 0, -EINVAL, -ENOENT, or another negative errno.
 */
SHMBUS_EXPORT int shmbus_channel_unlink(const char *dir, const char *name);

/**
 * shmbus_channel_name() - the channel's name as stored in it.
 * @chan: a channel.
 *
 * Lifetime: valid as long as @chan.
 * Return: never NULL.
 */
SHMBUS_EXPORT const char *shmbus_channel_name(const shmbus_channel *chan);

/**
 * shmbus_channel_max_msg() - the largest message the channel accepts.
 * @chan: a channel.
 *
 * Return: the size in bytes.
 */
SHMBUS_EXPORT size_t shmbus_channel_max_msg(const shmbus_channel *chan);

/**
 * shmbus_pub_new() - become a publisher on a channel.
 * @chan: a channel opened with SHMBUS_OPEN_PUBLISH.
 * @ret_pub: receives the publisher.
 *
 * Lifetime: the caller owns the result; free it with shmbus_pub_free(). It
 * holds a reference on @chan.
 * Return: 0, -EACCES (channel not mapped for publishing), -EUSERS (all
 * publisher slots in use), -ENOMEM.
 */
SHMBUS_EXPORT int shmbus_pub_new(shmbus_channel *chan, shmbus_pub **ret_pub);

/**
 * shmbus_pub_free() - leave the channel; an open claim is aborted.
 * @pub: a publisher, or NULL.
 *
 * Return: NULL.
 */
SHMBUS_EXPORT shmbus_pub *shmbus_pub_free(shmbus_pub *pub);

/**
 * shmbus_pub_claim() - reserve space for one message, to be written in place.
 * @pub: a publisher with no open claim.
 * @len: the message length, 1 to shmbus_channel_max_msg().
 * @timeout_ms: how long to wait for space: for the slowest subscriber on a
 *              SHMBUS_POLICY_BLOCK channel, and on either policy for another
 *              publisher whose claim, still open, is a whole ring behind.
 * @ret_buf: receives where to write exactly @len bytes.
 *
 * Follow with shmbus_pub_commit() or shmbus_pub_abort(), soon: subscribers
 * cannot read past an open claim, and other publishers cannot lap it. shmbusd
 * pads over a claim only once its publisher has died; a live publisher that
 * never commits holds the channel (shmbusd logs its pid after the unblock
 * timeout).
 *
 * Lifetime: *ret_buf is valid until the commit or abort.
 * Return: 0, -EINVAL, -EMSGSIZE, -EBUSY (a claim is already open), -EAGAIN
 * (full and @timeout_ms is 0), -ETIMEDOUT (still full when the time ran out).
 */
SHMBUS_EXPORT int shmbus_pub_claim(shmbus_pub *pub, size_t len, int timeout_ms, void **ret_buf);

/**
 * shmbus_pub_commit() - publish the claimed message.
 * @pub: a publisher with an open claim.
 *
 * Return: 0, -EINVAL (no open claim).
 */
SHMBUS_EXPORT int shmbus_pub_commit(shmbus_pub *pub);

/**
 * shmbus_pub_abort() - give up the claimed space; subscribers skip it.
 * @pub: a publisher with an open claim.
 *
 * Return: 0, -EINVAL (no open claim).
 */
SHMBUS_EXPORT int shmbus_pub_abort(shmbus_pub *pub);

/**
 * shmbus_pub_send() - copy one message into the channel and publish it.
 * @pub: a publisher with no open claim.
 * @data: the message.
 * @len: its length, 1 to shmbus_channel_max_msg().
 * @timeout_ms: as for shmbus_pub_claim().
 *
 * Return: 0, or any code of shmbus_pub_claim() and shmbus_pub_commit().
 */
SHMBUS_EXPORT int shmbus_pub_send(shmbus_pub *pub, const void *data, size_t len, int timeout_ms);

/**
 * shmbus_sub_new() - become a subscriber; it receives what is published from now on.
 * @chan: a channel not opened with SHMBUS_OPEN_INSPECT.
 * @ret_sub: receives the subscriber.
 *
 * Lifetime: the caller owns the result; free it with shmbus_sub_free(). It
 * holds a reference on @chan.
 * Return: 0, -EACCES (inspect-only mapping), -EUSERS (all subscriber slots
 * in use), -ENOMEM.
 */
SHMBUS_EXPORT int shmbus_sub_new(shmbus_channel *chan, shmbus_sub **ret_sub);

/**
 * shmbus_sub_free() - leave the channel; on a blocking channel publishers no
 * longer wait for this subscriber.
 * @sub: a subscriber, or NULL.
 *
 * Return: NULL.
 */
SHMBUS_EXPORT shmbus_sub *shmbus_sub_free(shmbus_sub *sub);

/**
 * shmbus_sub_set_spin() - how long a receive polls before it sleeps.
 * @sub: a subscriber.
 * @spin_us: microseconds of polling (default 50); 0 sleeps at once. Polling
 *           costs a CPU but saves the futex wake (a system call) on each side.
 *
 * Return: 0.
 */
SHMBUS_EXPORT int shmbus_sub_set_spin(shmbus_sub *sub, uint32_t spin_us);

/**
 * shmbus_sub_peek() - borrow the next message in place (zero copy).
 * @sub: a subscriber.
 * @ret_data: receives a pointer to the message in shared memory.
 * @ret_len: receives its length.
 * @timeout_ms: how long to wait for a message.
 *
 * A borrowed message from a previous peek is released first.
 *
 * Lifetime: *ret_data is BORROWED shared memory, read-only, valid until
 * shmbus_sub_release(), the next peek or receive, or shmbus_sub_free(). On a
 * SHMBUS_POLICY_OVERWRITE channel a publisher may overwrite it meanwhile:
 * shmbus_sub_release() then says -ESTALE and what was read must be dropped.
 * Return: 0, -EAGAIN (nothing yet and @timeout_ms is 0), -ETIMEDOUT,
 * -EBADMSG (a corrupt record was skipped; the subscriber has resynchronised
 * and the next call goes on).
 */
SHMBUS_EXPORT int shmbus_sub_peek(shmbus_sub *sub, const void **ret_data, size_t *ret_len,
                                  int timeout_ms);

/**
 * shmbus_sub_release() - finish with the borrowed message.
 * @sub: a subscriber.
 *
 * Return: 0, -EINVAL (nothing borrowed), -ESTALE (overwrite channel: the
 * message was overwritten while borrowed; it is counted as lost).
 */
SHMBUS_EXPORT int shmbus_sub_release(shmbus_sub *sub);

/**
 * shmbus_sub_recv() - copy the next message out.
 * @sub: a subscriber.
 * @buf: where to copy it.
 * @size: the size of @buf.
 * @timeout_ms: how long to wait for a message.
 *
 * Return: the message length (>= 1), -EMSGSIZE (@buf is too small; the
 * message stays, so call again with a larger buffer), -EAGAIN, -ETIMEDOUT,
 * -EBADMSG (as for shmbus_sub_peek()).
 */
SHMBUS_EXPORT ssize_t shmbus_sub_recv(shmbus_sub *sub, void *buf, size_t size, int timeout_ms);

/**
 * shmbus_sub_lost() - messages this subscriber missed.
 * @sub: a subscriber.
 *
 * On an overwrite channel, messages overwritten before this subscriber read
 * them; on any channel, messages whose publisher died between claim and commit
 * in a way that could not be told apart from a loss. Never decreases.
 *
 * Return: the count since shmbus_sub_new().
 */
SHMBUS_EXPORT uint64_t shmbus_sub_lost(const shmbus_sub *sub);

/**
 * shmbus_sub_received() - messages this subscriber has received.
 * @sub: a subscriber.
 *
 * Return: the count since shmbus_sub_new().
 */
SHMBUS_EXPORT uint64_t shmbus_sub_received(const shmbus_sub *sub);

/**
 * shmbus_client_new() - connect to shmbusd.
 * @socket_path: the daemon's socket, or NULL for $SHMBUS_SOCKET, or failing
 *               that SHMBUS_DEFAULT_SOCKET.
 * @ret_client: receives the connection.
 *
 * Thread-safe: one client may be used from several threads; requests are
 * serialised. If the daemon restarts, the next request reconnects by itself;
 * channels already opened keep working throughout, with or without a daemon.
 *
 * Lifetime: the caller owns the result; free it with shmbus_client_free().
 * Channels opened through it live on after it is freed.
 * Return: 0, -ECONNREFUSED or -ENOENT (no daemon at that socket), -EACCES,
 * -EPROTO (not a shmbusd, or an incompatible protocol), -ENOMEM.
 */
SHMBUS_EXPORT int shmbus_client_new(const char *socket_path, shmbus_client **ret_client);

/**
 * shmbus_client_free() - close the connection.
 * @client: a client, or NULL.
 *
 * Return: NULL.
 */
SHMBUS_EXPORT shmbus_client *shmbus_client_free(shmbus_client *client);

/**
 * shmbus_client_open() - open a channel through the daemon, which checks permissions.
 * @client: a client.
 * @name: the channel name.
 * @flags: SHMBUS_OPEN_PUBLISH to publish (otherwise subscribe only), and
 *         SHMBUS_OPEN_CREATE to create the channel if it does not exist.
 * @create_opts: geometry and policy for a channel this call creates, or NULL
 *               for the daemon's defaults (and its per-channel configuration,
 *               which always wins).
 * @ret_chan: receives the channel, mapped as @flags allow.
 *
 * Lifetime: the caller owns one reference; drop it with shmbus_channel_unref().
 * Return: 0, -EINVAL, -ENOENT (no such channel, and not asked to create),
 * -EACCES (the daemon's policy denies it), -EUSERS (a limit was reached),
 * -ENOSPC, -EPROTO, -ECONNREFUSED (daemon down and not back), -ENOMEM.
 */
SHMBUS_EXPORT int shmbus_client_open(shmbus_client *client, const char *name, int flags,
                                     const shmbus_opts *create_opts, shmbus_channel **ret_chan);

/**
 * shmbus_client_delete() - delete a channel (owner or root only).
 * @client: a client.
 * @name: the channel name.
 *
 * Members that have it mapped keep it until they let go; nobody new can open it.
 *
 * Return: 0, -EINVAL, -ENOENT, -EACCES, -ECONNREFUSED.
 */
SHMBUS_EXPORT int shmbus_client_delete(shmbus_client *client, const char *name);

/**
 * shmbus_client_request() - send one raw JSON request and get the raw reply.
 * @client: a client.
 * @request: a JSON object as documented in docs/PROTOCOL.md (not "open": use
 *           shmbus_client_open(), which handles the descriptors).
 * @ret_reply: receives the reply text, NUL-terminated.
 *
 * For tools (shmbus-cli uses it for list and stat).
 *
 * Lifetime: the caller owns *ret_reply; free it with free().
 * Return: 0 (the reply may still say "ok": false), -EINVAL, -EMSGSIZE,
 * -ECONNREFUSED, -EPROTO, -ENOMEM.
 */
SHMBUS_EXPORT int shmbus_client_request(shmbus_client *client, const char *request,
                                        char **ret_reply);

/*
 * ---- Batches of small messages (SHMBUS_1.1) ----
 *
 * Publishing or receiving many small messages one call at a time pays the
 * claim (an atomic compare-and-swap on a line every publisher shares) and the
 * reader's position bookkeeping once per message. The batch calls pay them
 * once per batch; every message is still a record of its own, delivered to
 * every subscriber in order, exactly as if sent with shmbus_pub_send().
 */

/**
 * shmbus_pub_send_batch() - copy several messages into the channel and publish them.
 * @pub: a publisher with no open claim.
 * @msgs: @n pointers to the messages.
 * @lens: their @n lengths, each 1 to shmbus_channel_max_msg().
 * @n: how many; 0 sends nothing.
 * @timeout_ms: how long the whole call may wait for space, as for
 *              shmbus_pub_claim().
 *
 * Every message is checked before any is sent. Then as many as fit are
 * claimed at once, with one claim for all of them, copied and committed in
 * order, and the rest follow in further claims: a batch larger than the ring
 * is sent in several. Subscribers may see the first messages of a batch
 * before the last ones are committed.
 *
 * Lifetime: nothing is kept; @msgs and @lens may be reused on return.
 * Return: the number of messages sent, @n unless the time ran out after some
 * were sent (the rest were not: send them again); -EINVAL (a NULL or
 * zero-length message, @n above INT_MAX), -EMSGSIZE (a message above
 * shmbus_channel_max_msg()), -EBUSY (a claim is open), -EAGAIN (full and
 * @timeout_ms is 0), -ETIMEDOUT (no space came in time): nothing was sent.
 */
SHMBUS_EXPORT int shmbus_pub_send_batch(shmbus_pub *pub, const void *const *msgs,
                                        const size_t *lens, size_t n, int timeout_ms);

/**
 * shmbus_sub_recv_batch() - copy out every message that is there, up to a limit.
 * @sub: a subscriber.
 * @buf: where to copy them, back to back with no gaps: message i starts at
 *       the sum of the lengths before it.
 * @buf_len: the size of @buf.
 * @lens: receives the length of each message copied.
 * @max_n: the most messages to copy (the number of entries of @lens).
 * @timeout_ms: how long to wait for the first message; the others are taken
 *              only if they are already there.
 *
 * Waits like shmbus_sub_recv() (spinning, then sleeping), then copies
 * messages in order until @max_n are copied, the next one does not fit in
 * what is left of @buf, or none is left. The position is published to
 * publishers once for the batch. A borrowed message from a previous peek is
 * released first.
 *
 * Lifetime: nothing is kept; the messages in @buf are the caller's.
 * Return: the number of messages copied (>= 1); -EINVAL, -EMSGSIZE (the first
 * message is longer than @buf_len; it stays, so call again with a larger
 * buffer), -EAGAIN (nothing and @timeout_ms is 0), -ETIMEDOUT, -EBADMSG (as
 * for shmbus_sub_peek()). On a SHMBUS_POLICY_OVERWRITE channel a message
 * overwritten while it was copied is left out and counted as lost, as
 * shmbus_sub_recv() does.
 */
SHMBUS_EXPORT int shmbus_sub_recv_batch(shmbus_sub *sub, void *buf, size_t buf_len, size_t *lens,
                                        size_t max_n, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* SHMBUS_H */
