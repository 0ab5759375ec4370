#ifndef CLOUDBIOS_CB_XXH_H
#define CLOUDBIOS_CB_XXH_H
/* The C under Platform's fast file checksums: XXH3-128 (xxHash, built in
 * from its header alone: no library at run time). */

/// The XXH3-128 of the file at `path`, as 32 lowercase hex digits and a
/// NUL in `hex` (33 bytes). Returns 0 or an errno value.
int cb_xxh128_file(const char *path, char *hex);

/// The XXH3-128 of `len` bytes, as `cb_xxh128_file` writes it.
void cb_xxh128_bytes(const void *data, unsigned long len, char *hex);

#endif
