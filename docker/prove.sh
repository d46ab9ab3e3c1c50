#!/usr/bin/env bash
# docker/prove.sh: proves the Docker path end to end on this machine, with images built here
# (no image registry needed), and prints a one-line result for the README.
#
#   bash docker/prove.sh                      images, compose demo, testcontainers tests
#   bash docker/prove.sh --rebuild            the same, every image built again from packages
#   bash docker/prove.sh tests/integration/test_broker.py     (other test selection)
#
# 1. images: docker/build-images.sh (builds what is missing; the project's image when its sources
#    changed);
# 2. compose: `up` of docker/compose.yml with those images, AION_PROVE_ENGINES engine workers and
#    AION_PROVE_ACTIVITIES activity workers (default 2 and 2), waits for the demo container and
#    checks that it exited 0 with the saga COMPLETED and a WorkflowCompleted history; asks the
#    broker from the host (its published port) for the same workflow; checks every worker still
#    runs; then `down -v` and checks that no container, network or volume of the project is left;
# 3. tests: the selected integration tests (default tests/integration/test_broker.py and
#    tests/integration/test_engine.py) with KAFKA_BOOTSTRAP_SERVERS unset and
#    AION_TEST_BROKER=docker: the session broker is a container of the local Kafka image started
#    by testcontainers (TESTCONTAINERS_RYUK_DISABLED=true: the reaper image cannot be pulled; the
#    fixture removes its container), and checks that none is left afterwards.
# Whatever fails, what this script started is stopped and removed. Exit 0 only when all passed.
#
# Needs: a running Docker engine, docker compose (plugin) or docker-compose, and what
# build-images.sh needs (root, debootstrap, Maven, Java). Installs the project with its test
# extra (pip install -e '.[test]') only when `import aion, testcontainers` fails.
# Environment: AION_PROVE_KAFKA_PORT (host port of the compose broker, default 29092),
# AION_PROVE_ENGINES, AION_PROVE_ACTIVITIES, AION_PROVE_DEMO_TIMEOUT (s, default 300), and
# build-images.sh's image names (AION_LOCAL_PYTHON_IMAGE, AION_LOCAL_KAFKA_IMAGE, AION_IMAGE).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
cd "$REPO"

PORT="${AION_PROVE_KAFKA_PORT:-29092}"
ENGINES="${AION_PROVE_ENGINES:-2}"
ACTIVITIES="${AION_PROVE_ACTIVITIES:-2}"
DEMO_TIMEOUT="${AION_PROVE_DEMO_TIMEOUT:-300}"
PYTHON_IMAGE="${AION_LOCAL_PYTHON_IMAGE:-aion-local/python:3.11}"
KAFKA_IMAGE="${AION_LOCAL_KAFKA_IMAGE:-aion-local/kafka:4.1.1}"
PROJECT="aion-streams-prove"   # not the users' aion-streams project: their stack is left alone
BUILD_ARGS=()
TESTS=()
for arg in "$@"; do
    if [[ "$arg" == --rebuild ]]; then BUILD_ARGS+=(--rebuild); else TESTS+=("$arg"); fi
done
((${#TESTS[@]} > 0)) || TESTS=(tests/integration/test_broker.py tests/integration/test_engine.py)

say() { printf '\nprove: %s\n' "$*"; }
fail() { printf 'prove: FAILED: %s\n' "$*" >&2; FAILURES+=("$*"); }
FAILURES=()
WORK="$(mktemp -d -t aion-prove.XXXXXX)"

if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
    compose_name="docker compose $(docker compose version --short 2>/dev/null)"
elif command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose)
    compose_name="docker-compose $(docker-compose version --short 2>/dev/null)"
else
    echo "prove: neither 'docker compose' nor 'docker-compose' is installed" >&2
    exit 1
fi
COMPOSE+=(-f docker/compose.yml -p "$PROJECT")
export AION_BASE_IMAGE="$PYTHON_IMAGE" AION_KAFKA_IMAGE="$KAFKA_IMAGE" AION_KAFKA_HOST_PORT="$PORT"

compose_up=0
cleanup() {
    if [[ $compose_up == 1 ]]; then
        "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    fi
    local left
    left="$(docker ps -aq --filter label=aion.test-broker)"
    [[ -z "$left" ]] || docker rm -f $left >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The host side (a workflow read through the published port, the tests) needs the project.
if ! python -c "import aion, testcontainers, pytest_asyncio" 2>/dev/null; then
    python -m pip install -q -e '.[test]'
fi

started_at="$(date -u +%Y-%m-%dT%H:%MZ)"
t_all=$SECONDS

# ------------------------------------------------------------------ 1. images

say "1/3 images (docker/build-images.sh)"
t=$SECONDS
bash "$HERE/build-images.sh" "${BUILD_ARGS[@]+"${BUILD_ARGS[@]}"}"
images_s=$((SECONDS - t))
images_how="kept"; ((${#BUILD_ARGS[@]} == 0)) || images_how="all rebuilt"

# ------------------------------------------------------------------ 2. compose

say "2/3 compose: kafka, topics, $ENGINES engine worker(s), $ACTIVITIES activity worker(s), demo (${COMPOSE[*]})"
t=$SECONDS
compose_up=1
"${COMPOSE[@]}" up -d --no-build --scale engine="$ENGINES" --scale activities="$ACTIVITIES"
demo="$("${COMPOSE[@]}" ps -q demo)"
[[ -n "$demo" ]] || { fail "compose started no demo container"; demo=""; }
demo_rc=""
if [[ -n "$demo" ]]; then
    demo_rc="$(timeout "$DEMO_TIMEOUT" docker wait "$demo" || echo timeout)"
fi
demo_s=$((SECONDS - t))
docker logs "$demo" >"$WORK/demo.log" 2>&1 || true
sed 's/^/  demo| /' "$WORK/demo.log"
wf_id="$(sed -n 's/^starting OrderSaga //p' "$WORK/demo.log" | head -n 1)"

[[ "$demo_rc" == 0 ]] || fail "the demo container exited with ${demo_rc:-nothing} (want 0)"
grep -q '"status": "COMPLETED"' "$WORK/demo.log" || fail "the demo printed no COMPLETED saga result"
grep -q 'WorkflowCompleted' "$WORK/demo.log" || fail "the demo's history has no WorkflowCompleted"
# The broker's EXTERNAL listener, from the host: the same workflow, COMPLETED.
if [[ -n "$wf_id" ]]; then
    if AION_BOOTSTRAP_SERVERS="127.0.0.1:$PORT" AION_TOPIC_PREFIX=aion \
            timeout 120 python -m aion.cli workflow describe "$wf_id" >"$WORK/describe.txt" 2>&1 \
            && grep -Eq '^status +COMPLETED' "$WORK/describe.txt"; then
        echo "prove: from the host (127.0.0.1:$PORT): $wf_id COMPLETED"
    else
        cat "$WORK/describe.txt" >&2
        fail "the host could not read $wf_id as COMPLETED through 127.0.0.1:$PORT"
    fi
fi
for svc in engine activities; do
    want=$ENGINES; [[ $svc == activities ]] && want=$ACTIVITIES
    running="$(docker ps -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$svc" --filter status=running | wc -l)"
    [[ "$running" == "$want" ]] || fail "$running of $want $svc containers still run after the demo"
done
if ((${#FAILURES[@]} > 0)); then
    for svc in kafka topics engine activities; do
        "${COMPOSE[@]}" logs --no-color --tail 30 "$svc" 2>&1 | sed 's/^/  log| /' || true
    done
fi

t=$SECONDS
"${COMPOSE[@]}" down -v --remove-orphans
compose_up=0
down_s=$((SECONDS - t))
left="$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")"
[[ -z "$left" ]] || fail "containers left after down: $left"
left="$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")"
[[ -z "$left" ]] || fail "networks left after down: $left"
left="$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")"
[[ -z "$left" ]] || fail "volumes left after down: $left"
compose_failures=${#FAILURES[@]}

# ------------------------------------------------------------------ 3. testcontainers

say "3/3 tests through testcontainers: ${TESTS[*]}"
t=$SECONDS
set +e
env -u KAFKA_BOOTSTRAP_SERVERS AION_TEST_BROKER=docker AION_TEST_KAFKA_IMAGE="$KAFKA_IMAGE" \
    TESTCONTAINERS_RYUK_DISABLED=true \
    python -m pytest -q -p no:cacheprovider --junitxml="$WORK/junit.xml" "${TESTS[@]}" 2>&1 \
    | tee "$WORK/pytest.log"
test_rc=${PIPESTATUS[0]}
set -e
tests_s=$((SECONDS - t))
counts="$(python - "$WORK/junit.xml" <<'PY' 2>/dev/null || echo "no junit report"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
s = root if root.tag == "testsuite" else root.find("testsuite")
n, f, e, k = (int(s.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
print(f"{n - f - e - k} passed, {f} failed, {e} errors, {k} skipped")
PY
)"
[[ $test_rc == 0 ]] || fail "pytest exited with $test_rc ($counts)"
grep -q 'kafka broker: .*Docker container' "$WORK/pytest.log" || fail "the tests' broker was not a Docker container"
left="$(docker ps -aq --filter label=aion.test-broker)"
[[ -z "$left" ]] || fail "broker containers left by the tests: $left"

# ------------------------------------------------------------------ result

total_s=$((SECONDS - t_all))
if ((${#FAILURES[@]} == 0)); then result=PASS; else result=FAIL; fi
compose_result=pass; ((compose_failures == 0)) || compose_result=FAIL
say "result"
printf '%s\n' \
    "docker/prove.sh${BUILD_ARGS[*]:+ ${BUILD_ARGS[*]}} $started_at: $result in ${total_s} s — images ${images_s} s ($images_how where present);" \
    "  compose ($ENGINES engine + $ACTIVITIES activity workers, $compose_name): up to saga completed ${demo_s} s, down -v ${down_s} s, $compose_result;" \
    "  testcontainers (${TESTS[*]}): $counts in ${tests_s} s"
for f in "${FAILURES[@]+"${FAILURES[@]}"}"; do printf '  failed: %s\n' "$f"; done
[[ $result == PASS ]]
