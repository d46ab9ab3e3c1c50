"""What schemas/README.md tells a Java consumer, checked with Apache Avro for Java
(schemas/java/SchemaCheck.java, the version pinned in schemas/java/pom.xml): one
``Schema.Parser`` fed every file fails, ``SchemaParser``, a seeded parser per file and the
self-contained ``Codec().schema_json`` output all load the schemas with the fingerprints the
engine writes. Needs Java 17+ and Maven (as the local broker does); Maven fetches Avro once."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from aion.codec import Codec

REPO = Path(__file__).resolve().parents[3]
JAVA = REPO / "schemas" / "java"
KINDS = {"event": "aion.events.Event", "event_key": "aion.events.EventKey", "command": "aion.commands.Command",
         "reply": "aion.commands.Reply", "task": "aion.tasks.TaskMessage"}


@pytest.mark.skipif(not (shutil.which("java") and shutil.which("mvn")),
                    reason="needs Java 17+ and Maven on PATH (schemas/java/SchemaCheck.java)")
def test_the_ways_schemas_readme_gives_java_consumers(tmp_path: Path) -> None:
    classpath = tmp_path / "avro.cp"
    subprocess.run(["mvn", "-B", "-q", "-f", str(JAVA / "pom.xml"), "dependency:build-classpath",
                    f"-Dmdep.outputFile={classpath}"], check=True, timeout=300, capture_output=True)
    codec = Codec()
    selfcontained = tmp_path / "selfcontained"
    selfcontained.mkdir()
    for kind in KINDS:
        (selfcontained / f"{kind}.avsc").write_text(codec.schema_json(kind))

    run = subprocess.run(["java", "-cp", classpath.read_text().strip(), str(JAVA / "SchemaCheck.java"),
                          str(REPO / "schemas"), str(selfcontained)],
                         capture_output=True, text=True, timeout=120)
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert out.startswith("Apache Avro 1.12."), out
    outcomes = dict(re.findall(r"^(\d\. .*?): (OK|FAILS: .*)$", out, re.M))
    assert outcomes == {
        "1. one Schema.Parser fed every file, alphabetical order":
            "FAILS: AvroTypeException: Undefined schema: aion.common.Payload",
        "1. one Schema.Parser fed every file, reverse order":
            "FAILS: AvroTypeException: Undefined schema: aion.tasks.CancelActivityTask",
        "2. one SchemaParser fed every file, alphabetical order": "OK",
        "2. one SchemaParser fed every file, reverse order": "OK",
        "3. a fresh Schema.Parser per file, seeded with the types already known": "OK",
        "4. the self-contained schemas (Codec().schema_json), each parsed alone": "OK",
    }, out
    expected = {name: codec.fingerprint(kind).hex() for kind, name in KINDS.items()}
    for name, fp in expected.items():
        assert len(re.findall(rf"^   {re.escape(name)} +{fp}$", out, re.M)) == 4, (name, fp, out)
