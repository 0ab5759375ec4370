#ifndef CLOUDBIOS_CB_SHA256_H
#define CLOUDBIOS_CB_SHA256_H
#include <stddef.h>
#include <stdint.h>

/// SHA-256 of a file (nettle), as 64 lowercase hex digits plus NUL into
/// `hex` (65 bytes). Returns 0 or an errno value.
int cb_sha256_file(const char *path, char *hex);
/// SHA-256 of a file being written (nettle), computed by a thread that
/// trails the writer, from the page cache. `open` (NULL with an errno in
/// `err`); `run` is the thread's body; the writer tells `written` how many
/// bytes the file has; `end` waits for the thread to hash them all (or,
/// with `cancel`, to stop; `running` 0: no thread was started, the hash is
/// made by the caller now), writes 64 hex digits and a NUL into `hex` and
/// frees everything. Returns 0 or the errno of a failed read.
typedef struct cb_sha256_trail cb_sha256_trail;
cb_sha256_trail *cb_sha256_trail_open(const char *path, int *err);
void cb_sha256_trail_run(cb_sha256_trail *t);
void cb_sha256_trail_written(cb_sha256_trail *t, int64_t size);
int cb_sha256_trail_end(cb_sha256_trail *t, int cancel, int running, char *hex);

#endif
