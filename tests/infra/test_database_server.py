import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from app.database_server import _forget_dead_holders


class FakeServer:
    _lock = threading.Lock()


def test_holders_that_died_are_forgotten(tmp_path: Path) -> None:
    """A serve killed by SIGKILL must not keep the embedded PostgreSQL running forever."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    holders = tmp_path / ".handle_pids.json"
    holders.write_text(json.dumps([os.getpid(), dead_pid]))
    _forget_dead_holders(tmp_path, FakeServer)
    assert json.loads(holders.read_text()) == [os.getpid()]


def test_no_holder_file_is_fine(tmp_path: Path) -> None:
    _forget_dead_holders(tmp_path, FakeServer)
    assert not (tmp_path / ".handle_pids.json").exists()
