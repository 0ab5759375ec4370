#define _GNU_SOURCE
#include "cb_disks.h"
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/blkpg.h>

int cb_disks_zeroout(int fd, uint64_t start, uint64_t length) {
    uint64_t range[2] = { start, length };
    return ioctl(fd, BLKZEROOUT, range);
}

int cb_disks_discard(int fd, uint64_t start, uint64_t length) {
    uint64_t range[2] = { start, length };
    return ioctl(fd, BLKDISCARD, range);
}

int cb_disks_reread_partitions(int fd) { return ioctl(fd, BLKRRPART, 0); }

int cb_disks_size(int fd, uint64_t *size) { return ioctl(fd, BLKGETSIZE64, size); }

int cb_disks_sector_size(int fd, int *size) { return ioctl(fd, BLKSSZGET, size); }

int cb_disks_flush_buffers(int fd) { return ioctl(fd, BLKFLSBUF, 0); }

int cb_disks_punch_hole(int fd, int64_t offset, int64_t length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
}

void *cb_disks_aligned_alloc(uint64_t alignment, uint64_t size) {
    void *p = NULL;
    if (posix_memalign(&p, alignment, size) != 0) return NULL;
    return p;
}

#include <unistd.h>
const int cb_disks_seek_data = SEEK_DATA;
const int cb_disks_seek_hole = SEEK_HOLE;
const int cb_disks_o_direct = O_DIRECT;

int cb_disks_add_partition(int fd, int number, int64_t start, int64_t length) {
    struct blkpg_partition p;
    memset(&p, 0, sizeof p);
    p.start = start;
    p.length = length;
    p.pno = number;
    struct blkpg_ioctl_arg a = { .op = BLKPG_ADD_PARTITION, .flags = 0, .datalen = sizeof p, .data = &p };
    return ioctl(fd, BLKPG, &a);
}

int cb_start_writeback(int fd, int64_t offset, int64_t length) {
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}
