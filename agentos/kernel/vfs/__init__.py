"""The virtual filesystem: host mounts and the confined resolution every host access goes through."""
