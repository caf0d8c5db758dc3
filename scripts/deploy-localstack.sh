#!/usr/bin/env bash
# Deploys Tandem into a running LocalStack with cdklocal: bootstrap, then deploy
# with `-c target=localstack` (API key checked in the functions, Node.js 22,
# DuckDB batch engine, no bisect on error, a provisioned stream, removable
# resources, functions for the host's CPU), then creates an API key in the
# stack's control table. See docs/deploy.md, "Deploying to LocalStack".
#
#   npm run deploy:localstack                      # defaults
#   npm run deploy:localstack -- -c views=./views.json
#   eval "$(npm run --silent deploy:localstack)"   # sets TANDEM_API_URL and TANDEM_API_KEY
#
# Only the two `export` lines go to stdout; progress and cdklocal's output go to stderr.
#
# Environment: LOCALSTACK_URL (default http://localhost:4566), AWS_DEFAULT_REGION
# (us-east-1), CDKLOCAL (the cdklocal command; default: cdklocal on PATH, else
# `npx --yes --package aws-cdk-local --package aws-cdk cdklocal`), TANDEM_KEY_NAME
# (name of the key created; default localstack-<UTC time>).
set -euo pipefail
cd "$(dirname "$0")/.."

export LOCALSTACK_URL="${LOCALSTACK_URL:-http://localhost:4566}"
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-$LOCALSTACK_URL}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export AWS_REGION="$AWS_DEFAULT_REGION"
# LocalStack accepts any credentials; "test" is its convention.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export CDK_DEFAULT_ACCOUNT="${CDK_DEFAULT_ACCOUNT:-000000000000}"
export CDK_DEFAULT_REGION="$AWS_DEFAULT_REGION"
export CDK_DISABLE_CLI_TELEMETRY=true CDK_DISABLE_VERSION_CHECK=true
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true

say() { echo "deploy-localstack: $*" >&2; }

if [ -n "${CDKLOCAL:-}" ]; then
  read -r -a cdklocal <<<"$CDKLOCAL"
elif command -v cdklocal >/dev/null 2>&1; then
  cdklocal=(cdklocal)
else
  cdklocal=(npx --yes --package aws-cdk-local --package aws-cdk cdklocal)
fi

if ! info=$(curl -fsS "$LOCALSTACK_URL/_localstack/info" 2>/dev/null); then
  say "LocalStack does not answer at $LOCALSTACK_URL. Start it with your auth token, e.g.:"
  say "  localstack auth set-token <your LOCALSTACK_AUTH_TOKEN>   # once (app.localstack.cloud -> Auth Tokens)"
  say "  localstack start -d"
  exit 1
fi
# Written for the LocalStack for AWS image of 2026 (calendar versions, auth token) and works from 4.1
# (S3 on-failure destinations of Kinesis mappings); older versions lack what the stack needs.
version=$(node -e 'try { console.log(JSON.parse(process.argv[1]).version ?? "") } catch { console.log("") }' "$info")
say "LocalStack ${version:-of unknown version} at $LOCALSTACK_URL"
case "$version" in
  [0-3].* | 4.0.*) say "warning: LocalStack $version is older than 4.1, which this target needs (docs/deploy.md)" ;;
esac

stack="Tandem"
for arg in "$@"; do
  case "$arg" in stackName=*) stack="${arg#stackName=}" ;; esac
done
outputs="cdk.out/localstack-outputs.json"

say "bootstrapping aws://$CDK_DEFAULT_ACCOUNT/$AWS_DEFAULT_REGION"
"${cdklocal[@]}" bootstrap --no-notices -c target=localstack "aws://$CDK_DEFAULT_ACCOUNT/$AWS_DEFAULT_REGION" >&2

say "deploying $stack"
"${cdklocal[@]}" deploy --no-notices --require-approval never -c target=localstack --outputs-file "$outputs" "$@" >&2

output() {
  node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[process.argv[2]]?.[process.argv[3]] ?? "")' \
    "$outputs" "$stack" "$1"
}
# LocalStack serves REST API stages at /_aws/execute-api/<id>/<stage>/ on its own port (the
# <id>.execute-api.localhost.localstack.cloud host works too, where that name resolves).
# shellcheck disable=SC2016 # ${...} below is JavaScript's, not the shell's
api_url=$(node -e '
  const m = /^https?:\/\/([a-z0-9]+)\.execute-api\.[^/]+\/([^/]+)\//.exec(process.argv[1]);
  if (!m) { console.error("deploy-localstack: no ApiUrl output in " + process.argv[2]); process.exit(1); }
  console.log(`${process.argv[3]}/_aws/execute-api/${m[1]}/${m[2]}/`);
' "$(output ApiUrl)" "$outputs" "$LOCALSTACK_URL")
control=$(output ControlTableName)
if [ -z "$control" ]; then
  say "no ControlTableName output in $outputs"
  exit 1
fi

# The same mechanism as in AWS: the key's SHA-256 hash goes into the control table
# (`tandem keys create`), the functions look it up on every request.
key_name="${TANDEM_KEY_NAME:-localstack-$(date -u +%Y%m%dT%H%M%SZ)}"
say "creating API key \"$key_name\" in $control"
key=$(node bin/tandem.js keys create "$key_name" --table "$control" --endpoint "$LOCALSTACK_URL")

cat >&2 <<EOF

Tandem is deployed to LocalStack (stack $stack).
  API URL: $api_url
  API key: $key   (name "$key_name"; shown once, only its hash is stored)

Next:
  export TANDEM_API_URL=$api_url
  export TANDEM_API_KEY=<the key above>
  curl -s "\${TANDEM_API_URL}health"
  npx tandem status
  npm run test:e2e -- --api "\$TANDEM_API_URL" --key "\$TANDEM_API_KEY"
Tear down: npx --package aws-cdk-local --package aws-cdk cdklocal destroy -c target=localstack --force

EOF
printf 'export TANDEM_API_URL=%q\nexport TANDEM_API_KEY=%q\n' "$api_url" "$key"
