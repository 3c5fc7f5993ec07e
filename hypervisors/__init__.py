"""Per-hypervisor packagers (vmware, proxmox, hyperv, libvirt) and the QEMU harness (qemu)."""
