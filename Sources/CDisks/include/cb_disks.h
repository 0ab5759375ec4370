#ifndef CLOUDBIOS_CB_DISKS_H
#define CLOUDBIOS_CB_DISKS_H
/* Block devices and loop devices (CDisks): ioctls whose request numbers are
 * macros, and flags that need _GNU_SOURCE. The installer writes disks with
 * them; Platform and PID 1 mount files through loop devices. */
#include <stddef.h>
#include <stdint.h>

/// BLKZEROOUT: zero a byte range of a block device (WRITE ZEROES when the
/// device supports it). 0 or -1 with errno.
int cb_disks_zeroout(int fd, uint64_t start, uint64_t length);
/// BLKDISCARD.
int cb_disks_discard(int fd, uint64_t start, uint64_t length);
/// BLKRRPART: have the kernel re-read the partition table.
int cb_disks_reread_partitions(int fd);
/// BLKPG_ADD_PARTITION: tell the kernel of one new partition (number,
/// start and length in bytes) while others of the disk are in use.
int cb_disks_add_partition(int fd, int number, int64_t start, int64_t length);
/// sync_file_range(WRITE): start writing a range back now, without
/// waiting, so a final fsync has little left to do.
int cb_start_writeback(int fd, int64_t offset, int64_t length);
/// BLKGETSIZE64.
int cb_disks_size(int fd, uint64_t *size);
/// BLKSSZGET: logical sector size.
int cb_disks_sector_size(int fd, int *size);
/// BLKFLSBUF: flush and drop the device's buffer cache.
int cb_disks_flush_buffers(int fd);
/// fallocate(PUNCH_HOLE | KEEP_SIZE): deallocate a range of a file (reads as zeros).
int cb_disks_punch_hole(int fd, int64_t offset, int64_t length);
/// posix_memalign wrapper (O_DIRECT buffers). NULL on failure.
void *cb_disks_aligned_alloc(uint64_t alignment, uint64_t size);
/// Constants that need _GNU_SOURCE.
extern const int cb_disks_seek_data;
extern const int cb_disks_seek_hole;
extern const int cb_disks_o_direct;
/// Attaches `path` read-only to a free loop device and writes its path
/// ("/dev/loopN") to `dev` and an open descriptor of it to `*fd`: the device
/// is detached when its last user goes, so mount it before closing `*fd`.
/// Returns 0 or an errno value.
int cb_loop_attach(const char *path, char *dev, size_t devlen, int *fd);
/// Moves the read-only loop device `dev` onto `path`, a file of the same
/// size and contents (LOOP_CHANGE_FD), while whatever is mounted from it
/// stays mounted. Returns 0 or an errno value.
int cb_loop_change_file(const char *dev, const char *path);

#endif
