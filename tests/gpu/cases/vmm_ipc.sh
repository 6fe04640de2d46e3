# POSIX file-descriptor handles of the virtual memory API between an
# application's processes (issues 14 and 15, docs/multi-gpu.md), sourced by
# tests/gpu/gpu-check (it uses gpu-check's check): tests/programs/vmm_ipc,
# memMapIPCDrv's pattern (the parent exports a cuMemCreate allocation as an
# fd, a forked-and-exec'd child imports it over SCM_RIGHTS, maps it and scales
# it with a kernel, the parent reads the result and imports its own fd again),
# natively and through gpuwire; then fds that are no exported allocation,
# whose error codes must be the driver's own; then a memory pool's fd and an
# allocation's export data, as streamOrderedAllocationIPC passes them.
check vmm_ipc build/programs/vmm_ipc
check vmm_ipc_forged build/programs/vmm_ipc forged
check vmm_ipc_pool build/programs/vmm_ipc pool
