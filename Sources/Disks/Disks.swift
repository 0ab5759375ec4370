// Disks module
