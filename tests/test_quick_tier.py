"""The unit tier stays quick and off the machine: an unmarked test that starts a program or puts
a socket to use fails at that call (tests/conftest.py), so it must say so by its mark."""

import socket
import subprocess

import pytest


def test_an_unmarked_test_may_neither_start_a_program_nor_use_a_socket():
    with pytest.raises(RuntimeError, match="starts another program"):
        subprocess.run(["true"], check=False)
    with pytest.raises(RuntimeError, match="opens a network socket"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    with socket.socket() as server, pytest.raises(RuntimeError, match="opens a network socket"):
        server.bind(("127.0.0.1", 0))


@pytest.mark.process
def test_a_process_test_may_do_both():
    assert subprocess.run(["true"], check=False).returncode == 0
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
