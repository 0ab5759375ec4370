#ifndef CLOUDBIOS_CB_FILESINK_H
#define CLOUDBIOS_CB_FILESINK_H
#include <stddef.h>
#include <stdint.h>

/// A file written from a stream and hashed (SHA-256, nettle) on the way,
/// by two threads of its own behind a bounded ring of blocks: the caller's
/// `write`s only copy. `open` takes an empty file open for writing (NULL
/// with an errno in `err`); `write` returns 0 or the errno of a failed
/// write to the file; `end` waits until every byte is hashed and written
/// (or, with `cancel`, stops at once), writes 64 hex digits and a NUL into
/// `hex` and frees everything, the file descriptor left open (not synced)
/// for the caller. Returns 0 or an errno value.
typedef struct cb_filesink cb_filesink;
cb_filesink *cb_filesink_open(int fd, int *err);
int cb_filesink_write(cb_filesink *s, const void *bytes, size_t n);
int cb_filesink_end(cb_filesink *s, int cancel, char *hex);

#endif
