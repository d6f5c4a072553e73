"""Starting ``semsynth serve``: the listening socket, the loopback default, model names (the CLI's bad options are
cases of tests/robustness/test_cli_bad_inputs.py)."""

from __future__ import annotations

import socket

import pytest

from semsynth.errors import SemsynthError
from semsynth.serve import engine, server


def test_the_socket_is_tcp_so_that_answers_are_not_delayed():
    """asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP; a socket made with protocol 0 made
    every keep-alive answer wait for a delayed ACK (~40 ms)."""
    sock = server.bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP and sock.getblocking() is False
        port = sock.getsockname()[1]
        assert server.url_of(sock) == f"http://127.0.0.1:{port}"
        with pytest.raises(SemsynthError, match=f"127.0.0.1:{port} is already in use"):
            server.bind("127.0.0.1", port)
        with socket.create_connection(("127.0.0.1", port)):  # listening: the connection waits in the backlog
            pass
    finally:
        sock.close()


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True),
                                            ("::1", True), ("[::1]", True), ("0.0.0.0", False),
                                            ("192.168.1.5", False), ("::", False), ("example.org", False)])
def test_loopback_hosts(host, loopback):
    assert server.is_loopback(host) is loopback


def test_a_public_host_is_warned_about_before_binding(tiny_dirs):
    said = []
    with pytest.raises(SemsynthError, match="not an address of this machine"):
        server.run_server([str(tiny_dirs["det"])], host="192.0.2.1", port=0, log=said.append)
    assert len(said) == 1 and "reachable from other machines" in said[0] and "no authentication" in said[0]
    said.clear()
    with pytest.raises(SemsynthError, match="--workers 0"):  # options are checked before anything else
        server.run_server([str(tiny_dirs["det"])], host="0.0.0.0", workers=0, log=said.append)
    assert said == []


def test_model_names(tmp_path, tiny_dirs):
    run_model = tmp_path / "00003-scgan-x" / "model"
    run_model.mkdir(parents=True)
    assert engine.parse_model_spec(str(run_model)) == ("00003-scgan-x", run_model)
    assert engine.parse_model_spec(f"my.model_1={tiny_dirs['det']}") == ("my.model_1", tiny_dirs["det"])
    odd = tmp_path / "a b+c"
    odd.mkdir()
    assert engine.parse_model_spec(str(odd))[0] == "a-b-c"  # a name that is safe in a URL query
    with pytest.raises(SemsynthError, match="two models are named 'det'"):
        engine.model_specs([str(tiny_dirs["det"]), f"det={tiny_dirs['faces']}"])


def test_without_models_the_bundled_generators_are_served():
    specs = engine.model_specs(None)
    names = [name for name, _ in specs]
    assert "scgan-synthetic-faces" in names and not any(n.startswith("segmenter-") for n in names)
    assert all((path / "model.safetensors").is_file() for _, path in specs)
