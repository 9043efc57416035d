"""Whether a folder may be shared by the nodes of a cluster: the filesystem it lives on, from ``/proc/mounts``.

A folder on a filesystem of one machine's own (a local disk's ``ext4``, ``xfs``, ``btrfs``, ``zfs``; memory's
``tmpfs``; a container's ``overlay``) is not seen by the jobs Slurm starts on other nodes.  Network and cluster
filesystems (``nfs``, ``lustre``, ``gpfs``, ``beegfs``, ``cephfs``, ``cifs``, FUSE mounts, ...) are taken as
shared, and so is any type not known to be local.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

LOCAL_TYPES = frozenset({
    "tmpfs", "ramfs", "devtmpfs", "overlay", "aufs", "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs",
    "bcachefs", "jfs", "reiserfs", "nilfs2", "vfat", "exfat", "ntfs", "ntfs3", "hfsplus", "apfs", "squashfs",
    "iso9660",
})
MOUNTS = Path("/proc/mounts")


def mount_of(path: Path, mounts: str) -> Optional[tuple[str, str]]:
    """``(mount point, filesystem type)`` of the mount holding ``path`` (an absolute path), from the text of
    ``/proc/mounts``; None where no mount holds it."""
    best: Optional[tuple[str, str]] = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        inside = point == "/" or path == Path(point) or Path(point) in path.parents
        if inside and (best is None or len(point) >= len(best[0])):  # the last mount at a point is the one seen
            best = (point, fields[2])
    return best


def local_filesystem(folder: str | Path, mounts: Optional[str] = None) -> Optional[tuple[str, str]]:
    """``(filesystem type, mount point)`` where ``folder`` lies on a filesystem of this machine's own; None where it
    lies on one taken as shared, or where the mounts cannot be read (not Linux).  Without ``mounts`` (the text of
    ``/proc/mounts``), this machine's, and the folder's real path (of its nearest existing parent, where it is not
    made yet)."""
    path = Path(folder).absolute()
    if mounts is None:
        path = path.resolve()
        while not path.exists() and path.parent != path:
            path = path.parent
        try:
            mounts = MOUNTS.read_text()
        except OSError:
            return None
    found = mount_of(path, mounts)
    if found is None or found[1] not in LOCAL_TYPES:
        return None
    return found[1], found[0]
