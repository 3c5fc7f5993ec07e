"""Disk images: the raw disks and their hypervisor formats (VMDK, VHDX, qcow2)."""
