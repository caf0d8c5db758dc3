#!/usr/bin/env bash
# Deploys Tandem into a running LocalStack (free edition) with cdklocal:
# bootstrap, then deploy with `-c target=localstack` (DuckDB batch engine, a
# provisioned stream, removable resources, functions for the host's CPU).
# Prints the API URL to use as TANDEM_API_URL. See docs/deploy.md.
#
#   npm run deploy:localstack                      # defaults
#   npm run deploy:localstack -- -c views=./views.json
#
# Environment: LOCALSTACK_URL (default http://localhost:4566), AWS_DEFAULT_REGION
# (us-east-1), CDKLOCAL (the cdklocal command; default: cdklocal on PATH, else
# `npx --yes --package aws-cdk-local --package aws-cdk cdklocal`).
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

if [ -n "${CDKLOCAL:-}" ]; then
  read -r -a cdklocal <<<"$CDKLOCAL"
elif command -v cdklocal >/dev/null 2>&1; then
  cdklocal=(cdklocal)
else
  cdklocal=(npx --yes --package aws-cdk-local --package aws-cdk cdklocal)
fi

if ! curl -fsS "$LOCALSTACK_URL/_localstack/health" >/dev/null; then
  echo "deploy-localstack: LocalStack does not answer at $LOCALSTACK_URL (start it with: localstack start -d)" >&2
  exit 1
fi

stack="Tandem"
for arg in "$@"; do
  case "$arg" in stackName=*) stack="${arg#stackName=}" ;; esac
done
outputs="cdk.out/localstack-outputs.json"

echo "deploy-localstack: bootstrapping aws://$CDK_DEFAULT_ACCOUNT/$AWS_DEFAULT_REGION" >&2
"${cdklocal[@]}" bootstrap --no-notices -c target=localstack "aws://$CDK_DEFAULT_ACCOUNT/$AWS_DEFAULT_REGION"

echo "deploy-localstack: deploying $stack" >&2
"${cdklocal[@]}" deploy --no-notices --require-approval never -c target=localstack --outputs-file "$outputs" "$@"

# LocalStack serves every REST API under /restapis/<id>/<stage>/_user_request_/ on its own port.
api_url=$(node -e '
  const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[process.argv[2]] ?? {};
  const m = /^https?:\/\/([a-z0-9]+)\.execute-api\.[^/]+\/([^/]+)\//.exec(o.ApiUrl ?? "");
  if (!m) { console.error("no ApiUrl output in " + process.argv[1]); process.exit(1); }
  console.log(`${process.argv[3]}/restapis/${m[1]}/${m[2]}/_user_request_`);
' "$outputs" "$stack" "$LOCALSTACK_URL")
control=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[process.argv[2]]?.ControlTableName ?? "")' "$outputs" "$stack")

cat <<EOF

Tandem is deployed to LocalStack.
  export TANDEM_API_URL=$api_url
  export TANDEM_API_KEY=\$(npx tandem keys create local --table $control --endpoint $LOCALSTACK_URL)
  npx tandem status
EOF
