"""The sandbox for process agents: launcher, namespaces, Landlock, seccomp, cgroups, FUSE."""
