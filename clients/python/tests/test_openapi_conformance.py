"""The service against its own OpenAPI document: schemathesis generates requests from
docs/openapi.json, sends them to a real `skillhost serve` on TCP with a token, and checks
every answer (status codes, content types, bodies against their schemas).

The stateful phase, and its inference of links, are off (schemathesis.toml in the
run's directory): the document declares no links, and the links schemathesis infers
name parameters the operations do not have (`id` on `/v1/skills/{name}`), which it
reports as an error before any scenario runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import BINARY, REPO


def test_every_answer_matches_the_openapi_document(start_service, tmp_path):
    made = subprocess.run([str(BINARY), "token", "conformance"], capture_output=True,
                          text=True, check=True)
    token = made.stdout.strip()
    tokens = tmp_path / "tokens.toml"
    tokens.write_text("\n".join(l for l in made.stderr.splitlines() if not l.startswith("#")))
    svc = start_service("--listen", "127.0.0.1:0", "--tokens", str(tokens))
    (tmp_path / "schemathesis.toml").write_text(
        "[phases.stateful]\nenabled = false\n\n[phases.stateful.inference]\nalgorithms = []\n"
    )
    st = Path(sys.executable).parent / "st"
    run = subprocess.run(
        [str(st), "run", str(REPO / "docs" / "openapi.json"), "--url", svc.tcp,
         "-H", f"Authorization: Bearer {token}", "--checks", "all",
         "--max-examples", "25", "--seed", "1", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
