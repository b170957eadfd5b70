"""Ember checkpoint/restore library.

A checkpoint is a directory holding a CRIU image of an engine's whole process tree (`images/`), the
CRIU logs (`logs/`) and a `manifest.json` that says what the image is (its identity), how big it
is, how long it took and whether a canary restore has proved it good. Modules:

- `manifest`: the manifest model and the identity hash (pure);
- `checksum`: the content checksum over the image files;
- `storage`: where checkpoints live (a local directory or a mounted PVC), published atomically;
- `criu`, `cuda`: the two tools that move a process out and back (I/O at the edge);
- `lifecycle`: dump, restore, verify, gc, built on the above;
- `gc`: which checkpoints to delete (pure);
- `cli`: `ember-checkpoint dump|restore|inspect|verify|gc`;
- `supervisor`: the replica container's PID 1 (cold start or restore, fallback once, metrics).
"""
