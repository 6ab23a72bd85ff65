"""`make client` turns the schema into a TypeScript client that type-checks (SPEC section 9)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks.infra import BIN_DIR, clean_env
from support import output_of, run

TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "noEmit": True,
        "target": "ES2022",
        "module": "ESNext",
        "moduleResolution": "Bundler",
        "lib": ["ES2022", "DOM", "DOM.Iterable"],
    },
    "include": ["client/**/*.ts"],
}


@pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed")
def test_make_client_generates_a_client_that_type_checks(bake, tmp_path: Path) -> None:
    project = bake(tmp_path / "out")
    env = clean_env(SECRET_KEY="k" * 64, npm_config_update_notifier="false")
    out = tmp_path / "ts"
    made = run(
        ["make", f"BIN={BIN_DIR}/", "client", f"CLIENT_DIR={out / 'client'}"],
        cwd=project,
        env=env,
        timeout=600,
    )
    assert made.returncode == 0, output_of(made)
    sdk = (out / "client" / "sdk.gen.ts").read_text()
    for name in ("authLogin", "mfaVerify", "authRefresh", "usersReadMe", "adminListUsers"):
        assert f"export const {name} " in sdk, name
    (out / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    typescript = "typescript@5.9"
    checked = run(["npx", "--yes", "-p", typescript, "tsc", "-p", str(out)], cwd=out, env=env)
    assert checked.returncode == 0, output_of(checked)
