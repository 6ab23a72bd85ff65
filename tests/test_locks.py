"""Every variant ships a uv.lock that matches its pyproject.toml, under the project's own name."""

from __future__ import annotations

import pytest

from locks import COMBOS, uv, uv_env
from support import output_of, run


@pytest.mark.parametrize(("database", "rate_limiter"), COMBOS, ids=lambda v: str(v))
def test_generated_lock_is_current_without_network(
    bake, tmp_path, database: str, rate_limiter: str
) -> None:
    project = bake(tmp_path, project_slug="my_auth-svc", database=database,
                   rate_limiter=rate_limiter, use_docker="no")  # fmt: skip
    assert not (project / ".uv-locks").exists()
    shipped = (project / "uv.lock").read_text()
    assert 'name = "my-auth-svc"' in shipped
    env = {**uv_env(), "UV_CACHE_DIR": str(tmp_path / "empty-cache")}
    checked = run([uv(), "lock", "--check", "--offline"], cwd=project, env=env)
    assert checked.returncode == 0, f"stale lock: run `make lock`\n{output_of(checked)}"
    relocked = run([uv(), "lock", "--offline"], cwd=project, env=env)
    assert relocked.returncode == 0, output_of(relocked)
    assert (project / "uv.lock").read_text() == shipped, "uv would rewrite the shipped lock"
