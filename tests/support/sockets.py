"""Which addresses a process listens on, read from /proc (Linux): what it bound, not
what its flags say it should have."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

_LISTEN = "0A"
"""The TCP state LISTEN in /proc/net/tcp."""


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _address(hex_address: str, family: socket.AddressFamily) -> str:
    """/proc/net/tcp's address: 32-bit words in host (little-endian) order. An IPv6
    socket bound to an IPv4-mapped address (gRPC binds so) counts as that IPv4 one."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(socket.inet_ntop(family, words))
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket `pid` listens on."""
    inodes = _socket_inodes(pid)
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and inode in inodes:
                hex_address, hex_port = local.split(":")
                found.add((_address(hex_address, family), int(hex_port, 16)))
    return found
