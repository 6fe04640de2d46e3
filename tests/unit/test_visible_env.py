"""The client's forwarded variables (EXT_ENV, codegen/protocol.txt) reach its
worker's environment: device selection as the driver reads it (visible.py),
the code-handling variables (JIT cache, PTX JIT, lazy loading) as given."""

from gpuwire import protocol
from gpuwire.visible import worker_env


def test_code_handling_variables_pass_through():
    client = {"CUDA_CACHE_DISABLE": "1", "CUDA_MODULE_LOADING": "EAGER"}
    env = worker_env({"PATH": "/bin", "CUDA_CACHE_DISABLE": "0"}, None, 1, client)
    assert env is not None
    assert env["CUDA_CACHE_DISABLE"] == "1" and env["CUDA_MODULE_LOADING"] == "EAGER" and env["PATH"] == "/bin"
    assert "CUDA_FORCE_PTX_JIT" not in env


def test_nothing_forwarded_keeps_the_servers_environment():
    assert worker_env({"PATH": "/bin"}, None, 1, {}) is None


def test_the_hello_record_carries_them_and_refuses_others():
    ok = protocol.parse_ext(protocol.pack_ext(env={"CUDA_CACHE_DISABLE": "1", "CUDA_FORCE_PTX_JIT": "1"}))
    assert dict(ok.env) == {"CUDA_CACHE_DISABLE": "1", "CUDA_FORCE_PTX_JIT": "1"}
    assert "CUDA_CACHE_PATH" not in protocol.ENV_FORWARDED  # a path on the server is not the client's to choose
