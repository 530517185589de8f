"""Durable storage of outgoing events (a file log and an in-memory twin) and the received-id window."""

from gwproactor.store._common import FULL_POLICIES, SYNC_POLICIES, StoreLocked, StoreWriteError
from gwproactor.store._received import FileReceivedIds
from gwproactor.store.file import FileEventStore, FsyncThread
from gwproactor.store.memory import MemoryEventStore, MemoryReceivedIds

__all__ = [
    "FULL_POLICIES",
    "SYNC_POLICIES",
    "FileEventStore",
    "FileReceivedIds",
    "FsyncThread",
    "MemoryEventStore",
    "MemoryReceivedIds",
    "StoreLocked",
    "StoreWriteError",
]
