"""Static checks of the Terraform deployment in terraform/.

No Terraform binary is needed: every .tf file is parsed with python-hcl2 and
the checks below read the parsed blocks. Each check is a function returning a
list of problems, so the negative tests at the bottom can feed it a bad
snippet and see it bite. When a terraform binary and the AWS provider happen
to be installed, `terraform fmt` and the mocked plans in terraform/tests/ run
too.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pytest

from api.cli import build_parser
from broker.settings import BrokerSettings

REPO = Path(__file__).resolve().parents[2]
TF_DIR = REPO / "terraform"
EXAMPLE_DIR = TF_DIR / "examples" / "minimal"

WORLD_CIDRS = {"0.0.0.0/0", "::/0"}


# ---------------------------------------------------------------------------
# Parsing: python-hcl2 output, normalised across its versions
# ---------------------------------------------------------------------------
#
# python-hcl2 8.x keeps the quotes of string literals ('"gp3"'), quotes block
# labels ('"aws_s3_bucket"'), wraps expressions as "${...}" and adds
# "__is_block__" / "__comments__" keys; 4.x-7.x did neither of the first two.
# After normalise(), a literal is its bare text, an expression or template is
# "${...}" text, a block is a dict and repeated blocks are a list of dicts.


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            return json.loads(text)
        except json.JSONDecodeError:  # quotes inside ${...} are not escaped
            return text[1:-1]
    return text


def normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {_unquote(k): normalise(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, str):
        return _unquote(value)
    return value


def strings_in(value: Any) -> Iterator[str]:
    """Every string (keys included) anywhere inside a parsed value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)
    elif isinstance(value, str):
        yield value


def blocks(value: Any) -> list[dict]:
    """A nested block as a list, whether it occurs once or repeatedly."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@dataclass
class Module:
    """The top-level blocks of one Terraform module (one folder)."""

    variables: dict[str, dict] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict] = field(default_factory=dict)
    data: dict[tuple[str, str], dict] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)
    modules: dict[str, dict] = field(default_factory=dict)
    other: list[dict] = field(default_factory=list)  # terraform, provider, check
    directory: Path | None = None

    def add(self, parsed: dict) -> None:
        for kind, items in normalise(parsed).items():
            for item in blocks(items):
                if kind == "variable":
                    self.variables.update(item)
                elif kind == "locals":
                    self.locals.update(item)
                elif kind in ("resource", "data"):
                    target = self.resources if kind == "resource" else self.data
                    for rtype, named in item.items():
                        for name, body in named.items():
                            target[(rtype, name)] = body
                elif kind == "output":
                    self.outputs.update(item)
                elif kind == "module":
                    self.modules.update(item)
                else:
                    self.other.append({kind: item})

    def resources_of(self, rtype: str) -> dict[str, dict]:
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    def data_of(self, dtype: str) -> dict[str, dict]:
        return {name: body for (t, name), body in self.data.items() if t == dtype}


def module_from_text(*texts: str) -> Module:
    module = Module()
    for text in texts:
        module.add(hcl2.loads(text))
    return module


def load_module(directory: Path) -> Module:
    module = Module(directory=directory)
    for path in sorted(directory.glob("*.tf")):
        with path.open() as f:
            module.add(hcl2.load(f))
    return module


@pytest.fixture(scope="module")
def root() -> Module:
    return load_module(TF_DIR)


@pytest.fixture(scope="module")
def example() -> Module:
    return load_module(EXAMPLE_DIR)


# ---------------------------------------------------------------------------
# Checks. Each returns a list of problems; empty means fine.
# ---------------------------------------------------------------------------

VAR_REF = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)")
LOCAL_REF = re.compile(r"\blocal\.([A-Za-z_][A-Za-z0-9_-]*)")
RESOURCE_REF = re.compile(r"(?<![\w.\"])(aws_[a-z0-9_]+)\.([a-z0-9_]+)")
DATA_REF = re.compile(r"\bdata\.([a-z0-9_]+)\.([a-z0-9_]+)")
MODULE_OUTPUT_REF = re.compile(r"\bmodule\.([a-z0-9_]+)\.([a-z0-9_]+)")


def _expressions(value: Any) -> Iterator[str]:
    """Strings that Terraform evaluates: expressions and templates."""
    return (s for s in strings_in(value) if "${" in s)


def variable_problems(module: Module) -> list[str]:
    """Every var.X used is declared; every declared variable is used elsewhere
    than in its own block; each has a type and a description."""
    problems = []
    used: set[str] = set()
    everything = [module.locals, module.resources, module.data, module.outputs, module.modules, module.other]
    for part in everything:
        for expr in _expressions(part):
            used.update(VAR_REF.findall(expr))
    for name, body in module.variables.items():
        for expr in _expressions(body):
            used.update(ref for ref in VAR_REF.findall(expr) if ref != name)
    for name in sorted(used - module.variables.keys()):
        problems.append(f"var.{name} is used but not declared")
    for name in sorted(module.variables.keys() - used):
        problems.append(f"variable {name!r} is declared but never used")
    for name, body in module.variables.items():
        if not str(body.get("description", "")).strip():
            problems.append(f"variable {name!r} has no description")
        if "type" not in body:
            problems.append(f"variable {name!r} has no type")
    return problems


def local_problems(module: Module) -> list[str]:
    problems = []
    used: set[str] = set()
    for part in [module.locals, module.resources, module.data, module.outputs, module.modules, module.other]:
        for expr in _expressions(part):
            used.update(LOCAL_REF.findall(expr))
    for name in sorted(used - module.locals.keys()):
        problems.append(f"local.{name} is used but not defined")
    for name in sorted(module.locals.keys() - used):
        problems.append(f"local {name!r} is defined but never used")
    return problems


def reference_problems(module: Module, called: Module | None = None) -> list[str]:
    """References to resources, data sources and a called module's outputs resolve."""
    problems = []
    for expr in _expressions([module.locals, module.resources, module.data, module.outputs,
                              module.modules, module.other, module.variables]):
        for rtype, name in RESOURCE_REF.findall(expr):
            if (rtype, name) not in module.resources:
                problems.append(f"{rtype}.{name} is referenced but not defined")
        for dtype, name in DATA_REF.findall(expr):
            if (dtype, name) not in module.data:
                problems.append(f"data.{dtype}.{name} is referenced but not defined")
        for mod, output in MODULE_OUTPUT_REF.findall(expr):
            if mod not in module.modules:
                problems.append(f"module.{mod} is referenced but not defined")
            elif called is not None and output not in called.outputs:
                problems.append(f"module.{mod}.{output} is not an output of the called module")
    return sorted(set(problems))


def _bucket_ref(expr: Any, bucket: str) -> bool:
    return isinstance(expr, str) and re.fullmatch(rf"\$\{{aws_s3_bucket\.{bucket}\.(id|bucket)\}}", expr) is not None


def _for_bucket(module: Module, rtype: str, bucket: str) -> list[dict]:
    return [body for body in module.resources_of(rtype).values() if _bucket_ref(body.get("bucket"), bucket)]


def bucket_problems(module: Module) -> list[str]:
    """Each bucket blocks public access, is encrypted at rest, aborts
    incomplete multipart uploads after a day and has no policy that allows."""
    problems = []
    buckets = module.resources_of("aws_s3_bucket")
    if not buckets:
        problems.append("no aws_s3_bucket")
    for bucket in buckets:
        access_blocks = _for_bucket(module, "aws_s3_bucket_public_access_block", bucket)
        if not access_blocks:
            problems.append(f"bucket {bucket!r} has no public access block")
        for pab in access_blocks:
            for setting in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
                if pab.get(setting) is not True:
                    problems.append(f"bucket {bucket!r}: {setting} is not true")

        encryption = _for_bucket(module, "aws_s3_bucket_server_side_encryption_configuration", bucket)
        algorithms = [
            default.get("sse_algorithm", "")
            for sse in encryption
            for rule in blocks(sse.get("rule"))
            for default in blocks(rule.get("apply_server_side_encryption_by_default"))
        ]
        if not algorithms:
            problems.append(f"bucket {bucket!r} has no default encryption")
        for algorithm in algorithms:
            if "AES256" not in algorithm and "aws:kms" not in algorithm:
                problems.append(f"bucket {bucket!r}: unexpected sse_algorithm {algorithm!r}")

        aborts = [
            abort
            for lifecycle in _for_bucket(module, "aws_s3_bucket_lifecycle_configuration", bucket)
            for rule in blocks(lifecycle.get("rule"))
            if rule.get("status") == "Enabled"
            for abort in blocks(rule.get("abort_incomplete_multipart_upload"))
        ]
        if [a.get("days_after_initiation") for a in aborts] != [1]:
            problems.append(f"bucket {bucket!r} lacks one enabled rule aborting incomplete multipart uploads after 1 day")

        for policy in _for_bucket(module, "aws_s3_bucket_policy", bucket):
            for statement in _policy_statements(module, policy.get("policy")):
                if statement.get("effect", "Allow") != "Deny":
                    problems.append(f"bucket {bucket!r}: its bucket policy allows something (only Deny statements belong there)")
    return problems


def _policy_statements(module: Module, policy_expr: Any) -> list[dict]:
    """Statements of an aws_iam_policy_document referenced as data.X.json,
    dynamic statements included (their content, with for_each alongside)."""
    match = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.([a-z0-9_]+)\.json\}", str(policy_expr))
    if not match or match.group(1) not in module.data_of("aws_iam_policy_document"):
        return [{"unparsable_policy": policy_expr}]
    document = module.data_of("aws_iam_policy_document")[match.group(1)]
    statements = list(blocks(document.get("statement")))
    for dynamic in blocks(document.get("dynamic")):
        for content_block in blocks(dynamic.get("statement")):
            for content in blocks(content_block.get("content")):
                statements.append({**content, "for_each": content_block.get("for_each")})
    return statements


# What tierlog's object store does (put, multipart put, ranged get and head,
# list, delete), split by the ARN each action applies to.
BUCKET_ACTIONS = {"s3:ListBucket", "s3:ListBucketMultipartUploads"}
OBJECT_ACTIONS = {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                  "s3:ListMultipartUploadParts"}
KMS_ACTIONS = {"kms:GenerateDataKey", "kms:Decrypt"}
SECRET_ACTIONS = {"secretsmanager:GetSecretValue"}  # SASL_SSL: the TLS key and the first user's password


def iam_problems(module: Module) -> list[str]:
    """The broker's role may do exactly what tierlog does, on the bucket's
    ARNs (the bucket and its prefix), the optional KMS keys and, under SASL_SSL,
    each of its secrets by ARN, and nothing else."""
    problems = []
    for rtype in ("aws_iam_role_policy_attachment", "aws_iam_policy_attachment"):
        for name in module.resources_of(rtype):
            problems.append(f"{rtype}.{name}: no managed policies on the broker")
    for name, role in module.resources_of("aws_iam_role").items():
        if "managed_policy_arns" in role or "inline_policy" in role:
            problems.append(f"aws_iam_role.{name}: policies belong in aws_iam_role_policy")
    role_policies = module.resources_of("aws_iam_role_policy")
    if not role_policies:
        problems.append("no aws_iam_role_policy for the broker")

    granted: set[str] = set()
    for name, role_policy in role_policies.items():
        for statement in _policy_statements(module, role_policy.get("policy")):
            where = f"aws_iam_role_policy.{name} statement {statement.get('sid', '?')!r}"
            if "unparsable_policy" in statement:
                problems.append(f"aws_iam_role_policy.{name}: policy must be data.aws_iam_policy_document.<name>.json")
                continue
            if statement.get("effect", "Allow") != "Allow":
                continue
            for key in ("not_actions", "not_resources", "principals", "not_principals"):
                if key in statement:
                    problems.append(f"{where}: {key} is not expected in the broker's policy")
            actions = set(statement.get("actions", []))
            resources = list(statement.get("resources", []))
            granted |= actions
            for action in sorted(actions):
                if "*" in action:
                    problems.append(f"{where}: wildcard action {action!r}")
                elif action not in BUCKET_ACTIONS | OBJECT_ACTIONS | KMS_ACTIONS | SECRET_ACTIONS:
                    problems.append(f"{where}: {action!r} is not something tierlog does")
            if not resources:
                problems.append(f"{where}: no resources")
            for resource in resources:
                bucket_arn = re.fullmatch(r"\$\{aws_s3_bucket\.([a-z0-9_]+)\.arn\}", resource)
                object_arn = re.fullmatch(r"\$\{aws_s3_bucket\.([a-z0-9_]+)\.arn\}/\$\{var\.object_prefix\}/\*", resource)
                for_each = str(statement.get("for_each"))
                kms_arn = resource == "${statement.value}" and ("var.kms_key_arn" in for_each
                                                                  or "var.secrets_kms_key_arn" in for_each)
                secret_arn = resource == "${statement.value}" and for_each == "${local.broker_secret_arns}"
                if bucket_arn:
                    wrong = actions - BUCKET_ACTIONS
                elif object_arn:
                    wrong = actions - OBJECT_ACTIONS
                elif kms_arn:
                    wrong = actions - KMS_ACTIONS
                elif secret_arn:
                    wrong = actions - SECRET_ACTIONS
                else:
                    problems.append(f"{where}: resource {resource!r} is not the bucket, its prefix, a KMS key or "
                                    f"one of the broker's secrets")
                    continue
                if wrong:
                    problems.append(f"{where}: {sorted(wrong)} do not apply to {resource!r}")
            if "s3:ListBucket" in actions:
                conditions = [c for c in blocks(statement.get("condition")) if c.get("variable") == "s3:prefix"]
                values = [v for c in conditions for v in c.get("values", [])]
                if values != ["${var.object_prefix}/*"]:
                    problems.append(f"{where}: s3:ListBucket must be limited to s3:prefix ${{var.object_prefix}}/*")
    missing = (BUCKET_ACTIONS | OBJECT_ACTIONS) - granted
    if role_policies and missing:
        problems.append(f"the broker's policy lacks {sorted(missing)}, which tierlog needs")
    return problems


def _local_closure(module: Module, value: Any, seen: set[str] | None = None) -> list[str]:
    """Expressions of a value plus those of every local it reaches."""
    seen = set() if seen is None else seen
    out = list(_expressions(value))
    for expr in list(out):
        for name in LOCAL_REF.findall(expr):
            if name not in seen and name in module.locals:
                seen.add(name)
                out += _local_closure(module, module.locals[name], seen)
    return out


def _ingress_rules(module: Module) -> Iterator[tuple[str, dict, dict]]:
    """(where, rule, resource body) for every way to write an ingress rule."""
    for name, body in module.resources_of("aws_vpc_security_group_ingress_rule").items():
        yield f"aws_vpc_security_group_ingress_rule.{name}", body, body
    for name, body in module.resources_of("aws_security_group_rule").items():
        if body.get("type") == "ingress":
            yield f"aws_security_group_rule.{name}", body, body
    for name, body in module.resources_of("aws_security_group").items():
        for rule in blocks(body.get("ingress")):
            yield f"aws_security_group.{name} ingress", rule, body
        for dynamic in blocks(body.get("dynamic")):
            for rule in blocks(dynamic.get("ingress")):
                yield f"aws_security_group.{name} dynamic ingress", rule, body


def ingress_problems(module: Module) -> list[str]:
    """With default variables, no ingress rule admits the whole internet:
    no literal world CIDR, and no variable feeding a rule defaults to one."""
    problems = []
    for where, rule, body in _ingress_rules(module):
        sources = {k: rule.get(k) for k in ("cidr_ipv4", "cidr_ipv6", "cidr_blocks", "ipv6_cidr_blocks",
                                             "for_each", "content") if k in rule}
        sources["for_each"] = rule.get("for_each", body.get("for_each"))
        for literal in strings_in(sources):
            if literal in WORLD_CIDRS:
                problems.append(f"{where}: open to {literal}")
        for expr in _local_closure(module, sources):
            for literal in WORLD_CIDRS:
                if f'"{literal}"' in expr:
                    problems.append(f"{where}: open to {literal} in {expr!r}")
            for var in VAR_REF.findall(expr):
                default = module.variables.get(var, {}).get("default")
                world = WORLD_CIDRS & set(strings_in(default))
                if world:
                    problems.append(f"{where}: var.{var} defaults to {sorted(world)}")
    return sorted(set(problems))


# ---------------------------------------------------------------------------
# User data: templatefile() rendering and the systemd units inside
# ---------------------------------------------------------------------------

TEMPLATEFILE_CALL = re.compile(r'templatefile\(\s*"\$\{path\.module\}/([^"]+)"\s*,\s*local\.([A-Za-z0-9_]+)\s*\)')


def templatefile_calls(module: Module) -> list[tuple[Path, str]]:
    """(template path, name of the local holding its variables) per call."""
    calls = []
    for expr in _expressions([module.resources, module.locals, module.outputs]):
        if "templatefile(" in expr:
            match = TEMPLATEFILE_CALL.search(expr)
            assert match, f"templatefile() must read ${{path.module}}/... with a local map: {expr}"
            calls.append((module.directory / match.group(1), match.group(2)))
    return calls


INTERPOLATION = re.compile(r"(?<!\$)\$\{\s*([^}]*?)\s*\}")


def render_template(text: str, values: dict[str, Any]) -> str:
    """templatefile() for the subset the templates use: ${name} and the
    $${ escape. Anything else is refused, so the test renders what
    Terraform renders or fails."""
    if re.search(r"(?<!%)%\{", text):
        raise ValueError("template directives (%{...}) are not supported by this renderer")

    def substitute(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"template uses ${{{name}}}, which templatefile() does not pass")
        return str(values[name])

    return INTERPOLATION.sub(substitute, text).replace("$${", "${").replace("%%{", "%{")


def template_names(text: str) -> set[str]:
    return set(INTERPOLATION.findall(text))


def heredocs(script: str) -> dict[str, str]:
    """Files a script writes with `cat > PATH <<'TAG'`: quoted heredocs only,
    so the shell leaves their ${...} to systemd or to the script itself."""
    return {m.group(1): m.group(3) for m in re.finditer(r"cat > (\S+) <<'(\w+)'\n(.*?)\n\2\n", script, re.S)}


def systemd_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """[Section] -> [(key, value)], with backslash continuations joined."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    joined = re.sub(r"\\\n\s*", " ", text)
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        else:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def unit_value(unit: dict, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def subcommand_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def exec_argv(exec_line: str, environment: dict[str, str]) -> list[str]:
    """An ExecStart line as argv, with systemd's ${VAR} expanded."""
    def expand(match: re.Match) -> str:
        if match.group(1) not in environment:
            raise KeyError(f"ExecStart uses ${{{match.group(1)}}}, which nothing sets")
        return environment[match.group(1)]

    return shlex.split(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", expand, exec_line))


def cli_problems(argv: list[str], subcommand: str) -> tuple[list[str], argparse.Namespace | None]:
    """Check `... tierlog <subcommand> flags` against the real CLI parser."""
    if subcommand not in argv or not argv[argv.index(subcommand) - 1].endswith("/tierlog"):
        return [f"not a `tierlog {subcommand}` command: {argv}"], None
    args = argv[argv.index(subcommand) + 1:]
    parser = build_parser()
    sub = subcommand_parser(parser, subcommand)
    if sub is None:
        return [f"the CLI has no {subcommand!r} subcommand"], None
    known = {opt for action in sub._actions for opt in action.option_strings}
    problems = [f"--{flag} is not a `tierlog {subcommand}` flag"
                for flag in (a[2:].split("=")[0] for a in args if a.startswith("--"))
                if f"--{flag}" not in known]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            namespace = parser.parse_args([subcommand, *args])
    except SystemExit:
        return problems + [f"`tierlog {subcommand}` refuses {args}: {stderr.getvalue().strip()}"], None
    return problems, namespace


# Sample values for template variables that are not plain var.X (those get
# the variable's default).
TEMPLATE_SAMPLES = {
    "object_store_url": "s3://tierlog-example-bucket/tierlog",
    "aws_region": "us-east-1",
    "imds_address_path": "local-ipv4",
    # What the module writes under SASL_SSL, its default (main.tf, security_conf), and broker_conf.
    "broker_properties": "listeners=SASL_SSL://0.0.0.0:9092\nlog.segment.bytes=268435456\n"
                         "log.local.retention.bytes=10737418240\nsasl.enabled.mechanisms=SCRAM-SHA-512\n"
                         "ssl.keystore.location=/etc/tierlog/tls/server.pem\nssl.keystore.type=PEM",
    "kafka_listener": "SASL_SSL",
    "service_host": "127.0.0.1",
    "insecure_flag": "",
    "tls_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:tierlog-tls-AbCdEf",
    "tls_pem_path": "/etc/tierlog/tls/server.pem",
    "first_user_name": "admin",
    "first_user_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:tierlog-admin-GhIjKl",
    "bench_package": "tierlog[bench]",
    "broker_host": "10.0.1.10",
    "bench_extra_args": "",
}
ADVERTISED_HOST = "10.0.1.10"


def template_values(module: Module, local_name: str) -> dict[str, Any]:
    values = {}
    for key, expr in module.locals[local_name].items():
        var = re.fullmatch(r"\$\{var\.([a-z0-9_]+)\}", str(expr))
        if var and module.variables[var.group(1)].get("default") is not None:
            values[key] = module.variables[var.group(1)]["default"]
        else:
            values[key] = TEMPLATE_SAMPLES[key]
    return values


def rendered_user_data(module: Module, template: str) -> tuple[str, dict[str, Any]]:
    for path, local_name in templatefile_calls(module):
        if path.name == template:
            values = template_values(module, local_name)
            return render_template(path.read_text(), values), values
    raise AssertionError(f"no templatefile() call renders {template}")


def serve_problems(script: str) -> tuple[list[str], argparse.Namespace | None]:
    """The broker unit's ExecStart runs `tierlog serve` with flags the CLI accepts."""
    units = {path: systemd_unit(body) for path, body in heredocs(script).items() if path.endswith(".service")}
    commands = [(path, line) for path, unit in units.items()
                for line in unit_value(unit, "Service", "ExecStart") if " serve" in line]
    if len(commands) != 1:
        return [f"expected one systemd ExecStart running `tierlog serve`, found {len(commands)}"], None
    path, line = commands[0]
    environment = dict(v.partition("=")[::2] for v in unit_value(units[path], "Service", "Environment"))
    # Written by the prepare script at boot, from instance metadata.
    if "TIERLOG_ADVERTISED_HOST=" in script:
        environment["TIERLOG_ADVERTISED_HOST"] = ADVERTISED_HOST
    try:
        argv = exec_argv(line, environment)
    except KeyError as exc:
        return [str(exc)], None
    return cli_problems(argv, "serve")


# ---------------------------------------------------------------------------
# Tests: the module as written
# ---------------------------------------------------------------------------


def test_every_tf_file_parses():
    files = sorted(TF_DIR.rglob("*.tf"))
    files = [f for f in files if ".terraform" not in f.parts]
    assert {f.name for f in files} >= {"versions.tf", "variables.tf", "outputs.tf", "main.tf"}
    assert EXAMPLE_DIR / "main.tf" in files
    for path in files:
        with path.open() as f:
            assert isinstance(hcl2.load(f), dict), path


def test_variables_are_declared_used_and_documented(root, example):
    assert variable_problems(root) == []
    assert variable_problems(example) == []


def test_variables_are_validated(root):
    # Free-form types (bool, maps of tags) aside, every input is checked.
    def type_of(body: dict) -> str:  # `bool` parses as "bool", `map(string)` as "${map(string)}"
        return re.sub(r"^\$\{(.*)\}$", r"\1", body["type"])

    unchecked = [name for name, body in root.variables.items()
                 if "validation" not in body and type_of(body) not in ("bool", "map(string)")]
    assert unchecked == []
    assert "validation" in root.variables["broker_conf"]


def test_locals_and_references_resolve(root, example):
    assert local_problems(root) == []
    assert reference_problems(root) == []
    assert reference_problems(example, called=root) == []


def test_bucket_is_private_encrypted_and_cleans_up_uploads(root):
    assert bucket_problems(root) == []
    sse = root.resources_of("aws_s3_bucket_server_side_encryption_configuration")["cold"]
    algorithm = sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"]
    # SSE-S3 unless a KMS key is given, and the KMS key defaults to none.
    assert algorithm == '${var.kms_key_arn == null ? "AES256" : "aws:kms"}'
    assert root.variables["kms_key_arn"]["default"] is None
    ownership = root.resources_of("aws_s3_bucket_ownership_controls")["cold"]
    assert ownership["rule"][0]["object_ownership"] == "BucketOwnerEnforced"


def test_segment_transition_is_optional_and_limited_to_instant_classes(root):
    variable = root.variables["segment_transition_storage_class"]
    assert variable["default"] is None
    # Only classes that still answer a ranged GET at once, as the read path needs.
    allowed = re.search(r"contains\(\[([^\]]*)\]", variable["validation"][0]["condition"]).group(1)
    assert re.findall(r'"([A-Z_]+)"', allowed) == ["STANDARD_IA", "GLACIER_IR"]
    lifecycle = root.resources_of("aws_s3_bucket_lifecycle_configuration")["cold"]
    transition = lifecycle["dynamic"][0]["rule"]["content"][0]["transition"][0]
    assert transition["storage_class"] == "${rule.value}"


def test_iam_policy_names_only_the_buckets_arns(root):
    assert iam_problems(root) == []
    # The bench instance gets no role at all; only the broker has one.
    assert "iam_instance_profile" not in root.resources_of("aws_instance")["bench"]
    profile = root.resources_of("aws_instance")["broker"]["iam_instance_profile"]
    assert profile == "${aws_iam_instance_profile.broker.name}"


def test_no_ingress_is_open_to_the_world_by_default(root):
    assert ingress_problems(root) == []
    assert root.variables["allowed_cidrs"]["default"] == []
    assert root.variables["ssh_cidrs"]["default"] == []
    # The broker's ports are the ones the security group opens.
    assert root.locals["broker_ports"] == {
        "kafka": "${var.kafka_port}", "grpc": "${var.grpc_port}", "metrics": "${var.metrics_port}"}


def test_templates_get_exactly_the_variables_they_use(root):
    calls = templatefile_calls(root)
    assert {path.name for path, _ in calls} == {"broker_user_data.sh.tftpl", "bench_user_data.sh.tftpl"}
    for path, local_name in calls:
        assert path.is_file(), path
        assert template_names(path.read_text()) == set(root.locals[local_name]), path.name


def test_broker_user_data_runs_serve_with_flags_the_cli_accepts(root):
    script, values = rendered_user_data(root, "broker_user_data.sh.tftpl")
    problems, args = serve_problems(script)
    assert problems == []
    assert args.command == "serve"
    assert args.object_store == values["object_store_url"] and args.object_store.startswith("s3://")
    # Kafka's listener comes from the properties (SASL_SSL on every interface, the port the
    # security group opens); gRPC and metrics stay on the loopback, so no --allow-insecure.
    assert not args.kafka_listen_given and not args.allow_insecure
    assert args.grpc_listen == f"127.0.0.1:{root.variables['grpc_port']['default']}"
    assert args.http_listen == f"127.0.0.1:{root.variables['metrics_port']['default']}"
    assert args.data_dir.startswith("/var/lib/tierlog/")
    assert args.config == "/etc/tierlog/broker.properties"
    assert f"advertised.listeners=SASL_SSL://{ADVERTISED_HOST}:9092" in args.conf
    # The properties file the user data writes is the one --config reads.
    assert f"cat > {args.config} <<'PROPERTIES'" in script


def test_broker_settings_accept_the_user_data_properties(root, example):
    script, _ = rendered_user_data(root, "broker_user_data.sh.tftpl")
    _, args = serve_problems(script)
    lines = heredocs(script)[args.config].splitlines() + args.conf
    lines += [f"{k}={v}" for k, v in example.modules["tierlog"]["broker_conf"].items()]
    properties = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    parsed = BrokerSettings.parse(properties)
    assert parsed.advertised_listeners == f"SASL_SSL://{ADVERTISED_HOST}:9092"
    assert parsed.listeners == "SASL_SSL://0.0.0.0:9092"
    assert parsed.ssl_properties["ssl.keystore.location"] == "/etc/tierlog/tls/server.pem"


def test_broker_user_data_writes_the_keystore_and_adds_the_first_user(root):
    script, values = rendered_user_data(root, "broker_user_data.sh.tftpl")
    prepare = heredocs(script)["/usr/local/sbin/tierlog-prepare"]
    assert f"tls_secret_arn='{values['tls_secret_arn']}'" in prepare
    assert f"--secret-id '{values['first_user_secret_arn']}'" in prepare
    # Written under a new name and renamed, so tierlog's reload never sees half a file.
    assert "> '/etc/tierlog/tls/server.pem.new')" in prepare and \
        "mv -f '/etc/tierlog/tls/server.pem.new' '/etc/tierlog/tls/server.pem'" in prepare
    [add] = [line for line in re.sub(r"\\\n\s*", " ", prepare).splitlines() if " users add " in line]
    argv = shlex.split(add.split("runuser -u tierlog -- ", 1)[1].split("; then")[0])
    assert argv[:2] == ["env", f"AWS_REGION={values['aws_region']}"]  # the bucket's client needs it
    argv = argv[2:]
    assert argv[1:5] == ["users", "add", "admin", "--mechanism"] and argv[5] == "SCRAM-SHA-512"
    assert argv[argv.index("--password-file") + 1] == "$password_file"
    assert argv[argv.index("--object-store") + 1] == values["object_store_url"]  # kept in the bucket too
    args = build_parser().parse_args(argv[1:])  # the CLI takes it as written
    assert (args.command, args.action, args.name, args.password_file) == ("users", "add", "admin", "$password_file")


def test_broker_unit_restarts_and_stops_gracefully(root):
    script, _ = rendered_user_data(root, "broker_user_data.sh.tftpl")
    unit = systemd_unit(heredocs(script)["/etc/systemd/system/tierlog.service"])
    assert unit_value(unit, "Service", "Restart") == ["on-failure"]
    assert unit_value(unit, "Service", "KillSignal") == ["SIGTERM"]
    assert unit_value(unit, "Service", "User") == ["tierlog"]
    assert unit_value(unit, "Service", "Environment").count("AWS_REGION=us-east-1") == 1
    assert "tierlog-prepare.service" in unit_value(unit, "Unit", "Requires")[0]
    assert "systemctl enable --now tierlog.service" in script


def test_broker_mounts_instance_store_nvme(root):
    script, _ = rendered_user_data(root, "broker_user_data.sh.tftpl")
    prepare = heredocs(script)["/usr/local/sbin/tierlog-prepare"]
    assert "Amazon EC2 NVMe Instance Storage" in prepare
    assert re.search(r"mkfs\.xfs .*\"\$target\"", prepare)
    assert re.search(r'mount .*"\$target" "\$mount_point"', prepare)
    assert "mount_point=/var/lib/tierlog\n" in prepare
    assert root.variables["instance_type"]["default"].startswith("i4i.")


def test_bench_user_data_targets_the_broker(root):
    script, values = rendered_user_data(root, "bench_user_data.sh.tftpl")
    unit = systemd_unit(heredocs(script)["/etc/systemd/system/tierlog-bench.service"])
    [line] = unit_value(unit, "Service", "ExecStart")
    argv = exec_argv(line, {})
    assert argv[1:] == ["bench", "--bootstrap", f"{values['broker_host']}:9092",
                        "--json", "/var/log/tierlog-bench.json"]
    assert root.locals["bench_user_data_vars"]["broker_host"] == "${aws_instance.broker.private_ip}"
    problems, args = cli_problems(argv, "bench")
    assert problems == []
    assert args.bootstrap == f"{values['broker_host']}:9092" and args.json == "/var/log/tierlog-bench.json"


@pytest.mark.parametrize("template", ["broker_user_data.sh.tftpl", "bench_user_data.sh.tftpl"])
def test_rendered_scripts_are_valid_bash(root, template):
    script, _ = rendered_user_data(root, template)
    scripts = [script] + [body for body in heredocs(script).values() if body.startswith("#!/bin/bash")]
    assert len(scripts) >= 2
    for text in scripts:
        result = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_instances_require_imdsv2_and_encrypt_root_volumes(root):
    for name, instance in root.resources_of("aws_instance").items():
        assert instance["metadata_options"][0]["http_tokens"] == "required", name
        assert instance["root_block_device"][0]["encrypted"] is True, name
        assert instance["user_data_replace_on_change"] is True, name


def test_outputs_give_bootstrap_metrics_and_bucket(root):
    for name in ("bootstrap_servers", "metrics_url", "bucket_name", "object_store_url", "bench_result_command"):
        assert name in root.outputs, name
        assert root.outputs[name].get("description"), name
    assert root.outputs["bootstrap_servers"]["value"] == "${local.broker_address}:${var.kafka_port}"
    assert ':${var.metrics_port}/metrics"' in root.outputs["metrics_url"]["value"]


def test_example_calls_the_module_with_declared_inputs(root, example):
    [(name, call)] = example.modules.items()
    assert (EXAMPLE_DIR / call["source"]).resolve() == TF_DIR
    inputs = set(call) - {"source", "version", "providers", "depends_on", "count", "for_each"}
    assert inputs <= set(root.variables), inputs - set(root.variables)
    required = {n for n, body in root.variables.items() if "default" not in body}
    assert required <= inputs
    assert call["allowed_cidrs"] == ["${var.my_cidr}"]


def test_readme_covers_apply_bench_cost_destroy():
    readme = (TF_DIR / "README.md").read_text()
    for heading in ("## Apply", "## Benchmark", "## Read the cost", "## Destroy"):
        assert heading in readme
    for command in ("terraform apply", "tierlog bench", "tierlog cost", "terraform destroy"):
        assert command in readme


# ---------------------------------------------------------------------------
# Tests: the checks bite on bad snippets
# ---------------------------------------------------------------------------

GOOD_POLICY = """
resource "aws_s3_bucket" "cold" {}
data "aws_iam_policy_document" "p" {
  statement {
    actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.cold.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.object_prefix}/*"]
    }
  }
  statement {
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${aws_s3_bucket.cold.arn}/${var.object_prefix}/*"]
  }
  %s
}
resource "aws_iam_role_policy" "p" {
  role   = "r"
  policy = data.aws_iam_policy_document.p.json
}
"""


def test_iam_check_accepts_the_good_policy_snippet():
    assert iam_problems(module_from_text(GOOD_POLICY % "")) == []


@pytest.mark.parametrize("extra, expected", [
    ('statement {\n actions = ["s3:GetObject"]\n resources = ["*"]\n }', "is not the bucket"),
    ('statement {\n actions = ["s3:*"]\n resources = [aws_s3_bucket.cold.arn]\n }', "wildcard action"),
    ('statement {\n actions = ["s3:GetObject"]\n resources = ["${aws_s3_bucket.cold.arn}/*"]\n }', "is not the bucket"),
    ('statement {\n actions = ["s3:DeleteObject"]\n resources = [aws_s3_bucket.cold.arn]\n }', "do not apply"),
    ('statement {\n actions = ["s3:PutBucketPolicy"]\n resources = [aws_s3_bucket.cold.arn]\n }', "not something tierlog does"),
    ('statement {\n actions = ["ec2:DescribeInstances"]\n resources = ["arn:aws:ec2:*:*:instance/*"]\n }', "not something"),
])
def test_iam_check_flags_wide_policies(extra, expected):
    problems = iam_problems(module_from_text(GOOD_POLICY % extra))
    assert any(expected in p for p in problems), problems


def test_iam_check_flags_unscoped_listing_and_managed_policies():
    unscoped = GOOD_POLICY.replace('values   = ["${var.object_prefix}/*"]', 'values   = ["*"]') % ""
    assert any("s3:prefix" in p for p in iam_problems(module_from_text(unscoped)))
    attached = GOOD_POLICY % "" + """
resource "aws_iam_role_policy_attachment" "admin" {
  role       = "r"
  policy_arn = "arn:aws:iam::aws:policy/AdministratorAccess"
}"""
    assert any("managed policies" in p for p in iam_problems(module_from_text(attached)))


@pytest.mark.parametrize("snippet, expected", [
    ("""
variable "allowed_cidrs" {
  type    = list(string)
  default = ["0.0.0.0/0"]
}
resource "aws_vpc_security_group_ingress_rule" "k" {
  for_each          = toset(var.allowed_cidrs)
  security_group_id = "sg-1"
  cidr_ipv4         = each.value
}""", "var.allowed_cidrs defaults to"),
    ("""
resource "aws_security_group" "b" {
  ingress {
    from_port   = 9092
    to_port     = 9092
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}""", "open to 0.0.0.0/0"),
    ("""
variable "cidrs" {
  type    = list(string)
  default = ["10.0.0.0/8", "::/0"]
}
locals {
  rules = { for c in var.cidrs : c => "kafka" }
}
resource "aws_vpc_security_group_ingress_rule" "k" {
  for_each          = local.rules
  security_group_id = "sg-1"
  cidr_ipv6         = each.key
}""", "var.cidrs defaults to ['::/0']"),
    ("""
resource "aws_security_group_rule" "r" {
  type        = "ingress"
  cidr_blocks = concat(["10.0.0.0/8"], ["0.0.0.0/0"])
}""", "open to 0.0.0.0/0"),
])
def test_ingress_check_flags_world_open_defaults(snippet, expected):
    problems = ingress_problems(module_from_text(snippet))
    assert any(expected in p for p in problems), problems


def test_ingress_check_allows_egress_to_the_world():
    snippet = """
resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = "sg-1"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}"""
    assert ingress_problems(module_from_text(snippet)) == []


@pytest.mark.parametrize("snippet, expected", [
    ('resource "aws_s3_bucket" "b" {}', "no public access block"),
    ("""
resource "aws_s3_bucket" "b" {}
resource "aws_s3_bucket_public_access_block" "b" {
  bucket                  = aws_s3_bucket.b.id
  block_public_acls       = true
  block_public_policy     = false
  ignore_public_acls      = true
  restrict_public_buckets = true
}""", "block_public_policy is not true"),
    ('resource "aws_s3_bucket" "b" {}', "no default encryption"),
    ('resource "aws_s3_bucket" "b" {}', "aborting incomplete multipart"),
])
def test_bucket_check_flags_open_or_unencrypted_buckets(snippet, expected):
    problems = bucket_problems(module_from_text(snippet))
    assert any(expected in p for p in problems), problems


def test_variable_check_flags_undeclared_and_unused():
    snippet = """
variable "used" {
  type        = string
  description = "x"
}
variable "forgotten" {
  type        = string
  description = "x"
  validation {
    condition     = length(var.forgotten) > 0
    error_message = "x"
  }
}
resource "aws_s3_bucket" "b" {
  bucket = "${var.used}-${var.typo}"
}"""
    problems = variable_problems(module_from_text(snippet))
    assert "var.typo is used but not declared" in problems
    assert "variable 'forgotten' is declared but never used" in problems
    assert not any("'used'" in p for p in problems)


def test_reference_check_flags_missing_resources():
    snippet = 'output "x" {\n  value = aws_s3_bucket.nope.arn\n}'
    assert reference_problems(module_from_text(snippet)) == ["aws_s3_bucket.nope is referenced but not defined"]


def test_serve_check_flags_unknown_and_malformed_flags():
    def script(exec_start: str) -> str:
        return ("cat > /etc/systemd/system/tierlog.service <<'UNIT'\n[Service]\n"
                f"ExecStart={exec_start}\nUNIT\n")

    good, args = serve_problems(script("/opt/tierlog/bin/tierlog serve --kafka-listen 0.0.0.0:9092"))
    assert good == [] and args.kafka_listen == "0.0.0.0:9092"
    bad, _ = serve_problems(script("/opt/tierlog/bin/tierlog serve --listen 0.0.0.0:9092"))
    assert "--listen is not a `tierlog serve` flag" in bad
    missing_value, _ = serve_problems(script("/opt/tierlog/bin/tierlog serve --data-dir"))
    assert any("refuses" in p for p in missing_value)
    unset, _ = serve_problems(script("/opt/tierlog/bin/tierlog serve --conf a=${NOPE}"))
    assert any("NOPE" in p for p in unset)


def test_renderer_refuses_what_it_cannot_render():
    with pytest.raises(KeyError):
        render_template("echo ${missing}", {})
    with pytest.raises(ValueError):
        render_template("%{ for x in xs }${x}%{ endfor }", {"xs": []})
    assert render_template("a=${a} b=$${B}", {"a": 1}) == "a=1 b=${B}"


# ---------------------------------------------------------------------------
# With a terraform binary: formatting and the mocked plans
# ---------------------------------------------------------------------------

TERRAFORM = shutil.which("terraform")


def _terraform(args: list[str], cwd: Path, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_DATA_DIR": str(data_dir), "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    return subprocess.run([TERRAFORM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(TERRAFORM is None, reason="no terraform binary")
def test_terraform_fmt(tmp_path):
    result = _terraform(["fmt", "-check", "-recursive", "-diff", str(TF_DIR)], TF_DIR, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _provider_dir() -> Path | None:
    """A local provider mirror (filesystem layout), so init needs no network."""
    for candidate in (os.environ.get("TIERLOG_TF_PLUGIN_DIR"), "/opt/tf-plugins"):
        if candidate and (Path(candidate) / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
            return Path(candidate)
    return None


@pytest.mark.skipif(TERRAFORM is None or _provider_dir() is None,
                    reason="needs terraform and a local AWS provider mirror (TIERLOG_TF_PLUGIN_DIR)")
def test_terraform_mocked_plans(tmp_path):
    # A copy, so init leaves no lock file or .terraform in the repository.
    work = tmp_path / "terraform"
    shutil.copytree(TF_DIR, work, ignore=shutil.ignore_patterns(".terraform*"))
    init = _terraform(["init", "-backend=false", "-input=false", f"-plugin-dir={_provider_dir()}"],
                      work, tmp_path / "data")
    assert init.returncode == 0, init.stdout + init.stderr
    test = _terraform(["test", "-no-color"], work, tmp_path / "data")
    assert test.returncode == 0, test.stdout + test.stderr
    assert "0 failed" in test.stdout
