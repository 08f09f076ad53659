#!/usr/bin/env python3
"""Deploy infra/template.yaml to moto CloudFormation and check what it created.

Run by `cargo xtask test` (step "template on moto CloudFormation") against a moto server it
starts on 127.0.0.1. Python rather than a Rust test because the SAM transform exists only as
a Python library (samtranslator, which CloudFormation's own AWS::Serverless transform is built
from), and boto3 reads back every service involved without compiling an SDK crate per service.

moto has no SAM transform, so the template is translated first. Function code is a small zip
uploaded to moto's S3, standing in for what `sam package` uploads; moto never runs it.

What moto 5.2.5 lacks, and how each gap is covered:
- Resource types its CloudFormation does not implement (APPLIERS: Glue database and tables,
  CloudWatch alarms, bucket and queue policies, the SNS subscription, the Lambda event invoke
  config) are taken out of the template moto deploys (references to them are replaced by the
  values they would have) and applied afterwards through the service APIs, with the exact
  properties of the translated template resolved against the deployed stack. botocore
  validates their shape against the real API models, and the checks read them back.
- Properties its CloudFormation accepts but ignores (a bucket's Block Public Access,
  ownership, versioning, lifecycle and notifications; a function's Architectures,
  LoggingConfig and DeadLetterConfig; the stream's mode and encryption) are checked on the
  translated template, resolved with the stack's parameters and physical ids. Those checks
  are marked "(template)".
A resource that moto's CloudFormation should have created and did not fails the run.

Two stacks are deployed: one with every parameter at its default, one with overrides
(provisioned stream, other batch sizes and windows, an alarm email) that flip each condition.

Usage: deploy_to_moto.py [--template PATH] [--endpoint URL] [--keep]
The endpoint defaults to $AWS_ENDPOINT_URL; credentials and region come from the usual AWS
environment variables (any values work with moto).
"""

from __future__ import annotations

import argparse
import ast
import copy
import io
import json
import os
import re
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import boto3
from botocore.config import Config
from cfnlint.decode import cfn_yaml
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"  # moto's default account
ARTIFACTS = "sluice-test-artifacts"

FUNCTIONS = {
    # logical id: (binary, short name)
    "IngestFunction": ("sluice-ingest", "ingest"),
    "AggregateFunction": ("sluice-aggregate", "aggregate"),
    "EvaluateFunction": ("sluice-evaluate", "evaluate"),
    "CompactFunction": ("sluice-compact", "compact"),
    "RegistryFunction": ("sluice-registry", "registry"),
}

# The canonical record (docs/ARCHITECTURE.md section 3), minus `tenant`, which is a partition key.
LOGS_COLUMNS = [
    ("ts", "timestamp"),
    ("received_at", "timestamp"),
    ("service", "string"),
    ("level", "string"),
    ("message", "string"),
    ("trace_id", "string"),
    ("span_id", "string"),
    ("http_method", "string"),
    ("http_path", "string"),
    ("http_status", "int"),
    ("latency_ms", "double"),
    ("host", "string"),
    ("region", "string"),
    ("event_id", "string"),
    ("attrs", "string"),
    ("origin", "string"),
]

# sluice-core's window::metrics_out schema, minus `tenant`.
METRICS_COLUMNS = [
    "window_start", "window_end", "service", "count", "trace", "debug", "info", "warn", "error",
    "fatal", "http_4xx", "http_5xx", "late", "error_rate", "latency_p50", "latency_p90",
    "latency_p95", "latency_p99", "latency_max",
]

OVERRIDES = {
    "StreamMode": "PROVISIONED",
    "ShardCount": "3",
    "StreamRetentionHours": "48",
    "IngestBatchSize": "500",
    "IngestBatchingWindowSeconds": "2",
    "IngestParallelizationFactor": "4",
    "AggregateBatchSize": "2000",
    "TumblingWindowSeconds": "120",
    "StreamMaximumRetryAttempts": "3",
    "StreamMaximumRecordAgeSeconds": "3600",
    "LogsExpirationDays": "400",
    "AlarmEmail": "ops@example.com",
    "Architecture": "x86_64",
    "LogLevel": "debug",
    "AllowedLatenessSeconds": "300",
    "EvaluateReservedConcurrency": "1",
    "TenantBuckets": "16",
}


class CheckFailed(Exception):
    pass


class Report:
    def __init__(self) -> None:
        self.passed = 0

    def check(self, ok: bool, what: str, detail: Any = None) -> None:
        if not ok:
            raise CheckFailed(f"{what}" + (f": {detail!r}" if detail is not None else ""))
        self.passed += 1
        print(f"  ok  {what}")

    def equal(self, actual: Any, expected: Any, what: str) -> None:
        self.check(actual == expected, what, None if actual == expected else
                   {"expected": expected, "actual": actual})


# ---------------------------------------------------------------------------------------------
# Template: load, stand in for `sam package`, translate
# ---------------------------------------------------------------------------------------------

def load_template(path: Path) -> dict[str, Any]:
    # cfn-lint's loader understands the short intrinsic tags (!Ref, !Sub, ...).
    return json.loads(json.dumps(cfn_yaml.loads(path.read_text(), str(path))))


def package(template: dict[str, Any]) -> dict[str, Any]:
    """What `sam package` does to the template: CodeUri becomes an S3 location."""
    packaged = copy.deepcopy(template)
    packaged.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    for logical_id, resource in packaged["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://{ARTIFACTS}/{logical_id}.zip"
    return packaged


def translate(template: dict[str, Any]) -> dict[str, Any]:
    translator = Translator(managed_policy_map={}, sam_parser=Parser())
    return translator.translate(copy.deepcopy(template), parameter_values={},
                                get_managed_policy_map=lambda: {})


def moto_template(translated: dict[str, Any]) -> dict[str, Any]:
    """The translated template without the resources moto's CloudFormation lacks (APPLIERS).

    moto rejects a template whose other resources or outputs reference a type it does not
    implement, so each reference is replaced by the value the resource would have had: a Glue
    database's Ref is its name, an alarm's Ref its name (`<stack>-<logical id>`, as
    apply_alarm names it) and its Arn follows from that name.
    """
    out = copy.deepcopy(translated)
    removed = {k: v for k, v in out["Resources"].items() if v["Type"] in APPLIERS}
    for logical in removed:
        del out["Resources"][logical]

    def ref_value(logical: str) -> Any:
        res = removed[logical]
        if res["Type"] == "AWS::Glue::Database":
            return res["Properties"]["DatabaseInput"]["Name"]
        if res["Type"] == "AWS::CloudWatch::Alarm":
            return {"Fn::Sub": "${AWS::StackName}-" + logical}
        if res["Type"] == "AWS::ApiGatewayV2::Api":
            # Known only once created: moto's stack gets a stand-in (permissions, outputs).
            return "moto-stand-in-" + logical
        if res["Type"] == "AWS::SecretsManager::Secret":
            # The ARN without the random suffix AWS appends (Secrets Manager accepts it).
            return {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:"
                               "${AWS::AccountId}:secret:" + res["Properties"]["Name"]["Fn::Sub"]}
        raise CheckFailed(f"{logical} ({res['Type']}) is referenced; moto_template() cannot "
                          "stand in for it")

    def getatt_value(logical: str, attr: str) -> Any:
        res = removed[logical]
        if res["Type"] == "AWS::CloudWatch::Alarm" and attr == "Arn":
            return {"Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:"
                               "${AWS::AccountId}:alarm:${AWS::StackName}-" + logical}
        raise CheckFailed(f"GetAtt {logical}.{attr}: moto_template() cannot stand in for it")

    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(n) for n in node]
        if not isinstance(node, dict):
            return node
        if list(node) == ["Ref"] and node["Ref"] in removed:
            return ref_value(node["Ref"])
        if list(node) == ["Fn::GetAtt"]:
            arg = node["Fn::GetAtt"]
            logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
            if logical in removed:
                return getatt_value(logical, attr)
        if list(node) == ["Fn::Sub"]:
            arg = node["Fn::Sub"]
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], dict(arg[1]))

            def one(match: re.Match[str]) -> str:
                name = match.group(1)
                logical, _, attr = name.partition(".")
                if logical not in removed:
                    return match.group(0)
                var = f"Shim{logical}{attr}"
                variables[var] = getatt_value(logical, attr) if attr else ref_value(logical)
                return "${" + var + "}"

            text = re.sub(r"\$\{([^}!][^}]*)\}", one, text)
            return {"Fn::Sub": [text, rewrite(variables)] if variables else text}
        return {k: rewrite(v) for k, v in node.items()}

    for res in out["Resources"].values():
        deps = [x for x in as_list(res.get("DependsOn", [])) if x not in removed]
        res.pop("DependsOn", None)
        if deps:
            res["DependsOn"] = deps
    out["Resources"] = rewrite(out["Resources"])
    out["Outputs"] = rewrite(out.get("Outputs", {}))
    return out


def dummy_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        zf.writestr(info, "#!/bin/sh\necho 'placeholder: moto does not run functions'\n")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Intrinsic functions, resolved against a deployed stack (for the resources moto skips)
# ---------------------------------------------------------------------------------------------

class Resolver:
    def __init__(self, template: dict[str, Any], params: dict[str, str], stack: dict[str, Any],
                 physical: dict[str, str], getatt: Callable[[str, str], str]) -> None:
        self.template = template
        self.params = {name: str(spec.get("Default", "")) for name, spec in
                       template.get("Parameters", {}).items()}
        self.params.update(params)
        stack_id = stack["StackId"]
        self.pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": stack_id.split(":")[3],
            "AWS::Partition": "aws",
            "AWS::StackName": stack["StackName"],
            "AWS::StackId": stack_id,
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.physical = physical
        self.getatt = getatt

    def condition(self, name: str) -> bool:
        return bool(self.value(self.template["Conditions"][name]))

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.physical:
            return self.physical[name]
        raise CheckFailed(f"cannot resolve Ref {name}")

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.value(n) for n in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.getatt(logical, attr)
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else arg
                extra = {k: self.value(v) for k, v in extra.items()}
                return self.sub(text, extra)
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(str(v) for v in self.value(items))
            if key == "Fn::Select":
                index, items = arg
                return self.value(items)[int(self.value(index))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.value(text)).split(sep)
            if key == "Fn::If":
                cond, yes, no = arg
                return self.value(yes if self.condition(cond) else no)
            if key == "Fn::Equals":
                a, b = (self.value(v) for v in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::And":
                return all(self.value(v) for v in arg)
            if key == "Fn::Or":
                return any(self.value(v) for v in arg)
            if key == "Condition":
                return self.condition(arg)
        out = {}
        for k, v in node.items():
            resolved = self.value(v)
            if resolved is not NO_VALUE:
                out[k] = resolved
        return out

    def sub(self, text: str, extra: dict[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in extra:
                return str(extra[name])
            if "." in name:
                logical, attr = name.split(".", 1)
                return str(self.getatt(logical, attr))
            return str(self.ref(name))
        return re.sub(r"\$\{([^}]+)\}", one, text)


NO_VALUE = object()


# ---------------------------------------------------------------------------------------------
# Deploying
# ---------------------------------------------------------------------------------------------

class Aws:
    def __init__(self, endpoint: str, region: str) -> None:
        config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2})
        self.clients: dict[str, Any] = {}
        self.endpoint, self.region, self.config = endpoint, region, config

    def __getattr__(self, service: str) -> Any:
        name = {"lambda_": "lambda"}.get(service, service)
        if name not in self.clients:
            self.clients[name] = boto3.client(name, endpoint_url=self.endpoint,
                                              region_name=self.region, config=self.config)
        return self.clients[name]


def create_stack(aws: Aws, name: str, template: dict[str, Any],
                 params: dict[str, str]) -> dict[str, Any]:
    aws.cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    deadline = time.monotonic() + 120
    while True:
        stack = aws.cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            raise CheckFailed(f"stack {name} still {stack['StackStatus']} after 120 s")
        time.sleep(0.5)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        events = aws.cloudformation.describe_stack_events(StackName=name)["StackEvents"]
        reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}" for e in events
                   if "FAILED" in e.get("ResourceStatus", "")]
        raise CheckFailed(f"stack {name} ended {stack['StackStatus']}: {reasons}")
    return stack


def stack_resources(aws: Aws, name: str) -> dict[str, dict[str, Any]]:
    pages = aws.cloudformation.get_paginator("list_stack_resources").paginate(StackName=name)
    return {r["LogicalResourceId"]: r for page in pages for r in page["StackResourceSummaries"]}


class Deployment:
    """A stack deployed to moto plus the resources applied through the APIs."""

    def __init__(self, aws: Aws, name: str, translated: dict[str, Any],
                 params: dict[str, str]) -> None:
        self.aws, self.name, self.translated, self.params = aws, name, translated, params
        self.stack = create_stack(aws, name, moto_template(translated), params)
        self.resources = stack_resources(aws, name)
        self.physical = {k: v["PhysicalResourceId"] for k, v in self.resources.items()}
        self.resolver = Resolver(translated, params, self.stack, self.physical, self.getatt)
        self.applied: dict[str, str] = {}  # logical id -> type, applied through the API
        self.outputs = {o["OutputKey"]: o.get("OutputValue")
                        for o in self.stack.get("Outputs", [])}

    def resource(self, logical: str) -> dict[str, Any]:
        return self.translated["Resources"][logical]

    def getatt(self, logical: str, attr: str) -> str:
        kind = self.resource(logical)["Type"]
        phys = self.physical[logical]
        if kind == "AWS::S3::Bucket" and attr == "Arn":
            return f"arn:aws:s3:::{phys}"
        if kind == "AWS::SQS::Queue":
            arn = self.aws.sqs.get_queue_attributes(
                QueueUrl=phys, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            return {"Arn": arn, "QueueName": arn.rsplit(":", 1)[1]}[attr]
        if kind == "AWS::Lambda::Function" and attr == "Arn":
            return self.aws.lambda_.get_function(FunctionName=phys)["Configuration"]["FunctionArn"]
        if kind == "AWS::Kinesis::Stream" and attr == "Arn":
            return self.aws.kinesis.describe_stream_summary(
                StreamName=phys)["StreamDescriptionSummary"]["StreamARN"]
        if kind == "AWS::CloudWatch::Alarm" and attr == "Arn":
            return f"arn:aws:cloudwatch:{self.aws.region}:{ACCOUNT}:alarm:{phys}"
        if kind == "AWS::IAM::Role" and attr == "Arn":
            return self.aws.iam.get_role(RoleName=phys)["Role"]["Arn"]
        if kind == "AWS::Logs::LogGroup" and attr == "Arn":
            groups = self.aws.logs.describe_log_groups(logGroupNamePrefix=phys)["logGroups"]
            return next(g["arn"] for g in groups if g["logGroupName"] == phys)
        if kind == "AWS::KMS::Key" and attr == "Arn":
            return self.aws.kms.describe_key(KeyId=phys)["KeyMetadata"]["Arn"]
        raise CheckFailed(f"GetAtt {logical}.{attr} ({kind}) is not implemented here")

    def skipped_by_moto(self) -> dict[str, str]:
        """Resources moto's CloudFormation did not create (their conditions being true)."""
        out = {}
        for logical, res in self.translated["Resources"].items():
            if logical in self.resources:
                continue
            if "Condition" in res and not self.resolver.condition(res["Condition"]):
                continue
            out[logical] = res["Type"]
        return out

    def apply_skipped(self) -> None:
        """Creates what moto's CloudFormation skipped, through the service APIs."""
        skipped = self.skipped_by_moto()
        # Dependencies among the skipped resources: the database before its tables.
        order = sorted(skipped, key=lambda k: APPLY_ORDER.get(skipped[k], 50))
        for logical in order:
            kind = skipped[logical]
            handler = APPLIERS.get(kind)
            if handler is None:
                raise CheckFailed(f"moto's CloudFormation did not create {logical} ({kind}); "
                                  "if moto lacks that type, add an API fallback to APPLIERS")
            props = self.resolver.value(self.resource(logical).get("Properties", {}))
            self.applied[logical] = handler(self, logical, props)
            self.physical[logical] = self.applied[logical]
            print(f"  --  {logical} ({kind}): skipped by moto CloudFormation, applied through the API")

    def delete(self) -> None:
        self.aws.cloudformation.delete_stack(StackName=self.name)
        for logical, kind in self.skipped_by_moto().items():
            if kind == "AWS::Glue::Database":
                self.aws.glue.delete_database(Name=self.physical[logical])
            elif kind == "AWS::CloudWatch::Alarm":
                self.aws.cloudwatch.delete_alarms(AlarmNames=[self.physical[logical]])


def apply_glue_database(d: Deployment, logical: str, props: dict[str, Any]) -> str:
    d.aws.glue.create_database(CatalogId=props["CatalogId"], DatabaseInput=props["DatabaseInput"])
    return props["DatabaseInput"]["Name"]


def apply_glue_table(d: Deployment, logical: str, props: dict[str, Any]) -> str:
    d.aws.glue.create_table(CatalogId=props["CatalogId"], DatabaseName=props["DatabaseName"],
                            TableInput=props["TableInput"])
    return props["TableInput"]["Name"]


def apply_alarm(d: Deployment, logical: str, props: dict[str, Any]) -> str:
    name = props.pop("AlarmName", f"{d.name}-{logical}")
    d.aws.cloudwatch.put_metric_alarm(AlarmName=name, **props)
    return name


def apply_bucket_policy(d: Deployment, logical: str, props: dict[str, Any]) -> str:
    d.aws.s3.put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"]))
    return props["Bucket"]


def apply_queue_policy(d: Deployment, logical: str, props: dict[str, Any]) -> str:
    for url in props["Queues"]:
        d.aws.sqs.set_queue_attributes(QueueUrl=url,
                                       Attributes={"Policy": json.dumps(props["PolicyDocument"])})
    return ",".join(props["Queues"])


def apply_subscription(d: Deployment, logical: str, props: dict[str, Any]) -> str:
    return d.aws.sns.subscribe(TopicArn=props["TopicArn"], Protocol=props["Protocol"],
                               Endpoint=props["Endpoint"])["SubscriptionArn"]


def apply_event_invoke_config(d: Deployment, logical: str, props: dict[str, Any]) -> str:
    d.aws.lambda_.put_function_event_invoke_config(**props)
    return f"{props['FunctionName']}:{props['Qualifier']}"


def apply_secret(d: Deployment, logical: str, props: dict[str, Any]) -> str:
    generate = props.get("GenerateSecretString", {})
    value = d.aws.secretsmanager.get_random_password(
        PasswordLength=int(generate.get("PasswordLength", 32)),
        ExcludePunctuation=bool(generate.get("ExcludePunctuation", False)))["RandomPassword"]
    return d.aws.secretsmanager.create_secret(Name=props["Name"], SecretString=value,
                                              Description=props.get("Description", ""))["ARN"]


def apply_http_api(d: Deployment, logical: str, props: dict[str, Any]) -> str:
    body = props.get("Body", {})
    return d.aws.apigatewayv2.create_api(Name=body.get("info", {}).get("title", logical),
                                         ProtocolType="HTTP")["ApiId"]


def apply_http_api_stage(d: Deployment, logical: str, props: dict[str, Any]) -> str:
    keep = ("AccessLogSettings", "DefaultRouteSettings", "AutoDeploy", "StageVariables")
    props = dict(props)
    # Template parameters resolve to strings; the API wants numbers and booleans.
    route = dict(props.get("DefaultRouteSettings", {}))
    for key, kind in (("ThrottlingBurstLimit", int), ("ThrottlingRateLimit", float)):
        if key in route:
            route[key] = kind(route[key])
    if route:
        props["DefaultRouteSettings"] = route
    if "AutoDeploy" in props:
        props["AutoDeploy"] = str(props["AutoDeploy"]).lower() == "true"
    d.aws.apigatewayv2.create_stage(ApiId=props["ApiId"], StageName=props["StageName"],
                                    **{k: v for k, v in props.items() if k in keep})
    return props["StageName"]


def apply_http_api_integration(d: Deployment, logical: str, props: dict[str, Any]) -> str:
    keep = ("IntegrationType", "IntegrationUri", "IntegrationMethod", "PayloadFormatVersion",
            "TimeoutInMillis")
    return d.aws.apigatewayv2.create_integration(
        ApiId=props["ApiId"], **{k: v for k, v in props.items() if k in keep})["IntegrationId"]


def apply_http_api_route(d: Deployment, logical: str, props: dict[str, Any]) -> str:
    keep = ("Target", "AuthorizationType")
    return d.aws.apigatewayv2.create_route(
        ApiId=props["ApiId"], RouteKey=props["RouteKey"],
        **{k: v for k, v in props.items() if k in keep})["RouteId"]


APPLIERS: dict[str, Callable[[Deployment, str, dict[str, Any]], str]] = {
    "AWS::ApiGatewayV2::Integration": apply_http_api_integration,
    "AWS::ApiGatewayV2::Route": apply_http_api_route,
    "AWS::ApiGatewayV2::Api": apply_http_api,
    "AWS::ApiGatewayV2::Stage": apply_http_api_stage,
    "AWS::SecretsManager::Secret": apply_secret,
    "AWS::Glue::Database": apply_glue_database,
    "AWS::Glue::Table": apply_glue_table,
    "AWS::CloudWatch::Alarm": apply_alarm,
    "AWS::S3::BucketPolicy": apply_bucket_policy,
    "AWS::SQS::QueuePolicy": apply_queue_policy,
    "AWS::SNS::Subscription": apply_subscription,
    "AWS::Lambda::EventInvokeConfig": apply_event_invoke_config,
}
APPLY_ORDER = {"AWS::Glue::Database": 0, "AWS::Glue::Table": 1, "AWS::ApiGatewayV2::Api": 0,
               "AWS::ApiGatewayV2::Integration": 1}


# ---------------------------------------------------------------------------------------------
# Assertions
# ---------------------------------------------------------------------------------------------

def statements(doc: Any) -> list[dict[str, Any]]:
    st = doc["Statement"]
    return st if isinstance(st, list) else [st]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def s3_grants(aws: Aws, role_name: str) -> dict[str, set[str]]:
    """Every S3 resource the role's inline policies allow, mapped to its actions."""
    grants: dict[str, set[str]] = {}
    for policy in aws.iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        doc = aws.iam.get_role_policy(RoleName=role_name, PolicyName=policy)["PolicyDocument"]
        if isinstance(doc, str):
            # moto keeps inline policies from CloudFormation as a Python repr, not JSON.
            try:
                doc = json.loads(doc)
            except json.JSONDecodeError:
                doc = ast.literal_eval(doc)
        for st in statements(doc):
            actions = [a for a in as_list(st["Action"]) if a.startswith("s3:")]
            if st["Effect"] != "Allow" or not actions:
                continue
            for resource in as_list(st["Resource"]):
                grants.setdefault(resource, set()).update(actions)
    return grants


def check_deployment(r: Report, d: Deployment, params: dict[str, str]) -> None:
    aws, phys = d.aws, d.physical
    p = dict(d.resolver.params)

    # Stream
    stream = aws.kinesis.describe_stream_summary(
        StreamName=phys["LogStream"])["StreamDescriptionSummary"]
    r.equal(stream["StreamStatus"], "ACTIVE", "Kinesis stream is active")
    r.equal(stream["RetentionPeriodHours"], int(p["StreamRetentionHours"]),
            "stream retention hours")
    if p["StreamMode"] == "PROVISIONED":
        r.equal(stream["OpenShardCount"], int(p["ShardCount"]), "provisioned shard count")
    stream_arn = stream["StreamARN"]

    # Buckets
    data, rules = phys["DataBucket"], phys["RulesBucket"]
    suffix = d.stack["StackId"].split("/")[2].split("-")[0]
    r.equal(data, f"sluice-data-{ACCOUNT}-{aws.region}-{suffix}", "data bucket name")
    r.equal(rules, f"sluice-rules-{ACCOUNT}-{aws.region}-{suffix}",
            "rules bucket name (the computed name the roles use)")
    for bucket in (data, rules):
        enc = aws.s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
        r.equal(enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"], "aws:kms",
                f"{bucket}: SSE-KMS by default")
        policy = json.loads(aws.s3.get_bucket_policy(Bucket=bucket)["Policy"])
        tls = [s for s in statements(policy) if s["Effect"] == "Deny"
               and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"]
        r.check(len(tls) == 1, f"{bucket}: bucket policy denies requests without TLS", policy)
        if bucket == rules:
            # docs/ARCHITECTURE.md §10: what is loaded as native code, and the digests it is
            # checked against, are written by the registry's role and nobody else.
            def only(sid: str) -> tuple[list[str], set[str], str]:
                found = [s for s in statements(policy) if s.get("Sid") == sid
                         and s["Effect"] == "Deny"]
                if len(found) != 1:
                    return [], set(), ""
                res = found[0]["Resource"]
                return (sorted(res if isinstance(res, list) else [res]),
                        set(found[0]["Action"]),
                        found[0]["Condition"].get("ArnNotEquals", {}).get("aws:PrincipalArn", ""))
            resources, actions, principal = only("OnlyTheRegistryWritesCompiledRules")
            r.check(resources == [f"arn:aws:s3:::{rules}/compiled/*",
                                  f"arn:aws:s3:::{rules}/control/registry/*"]
                    and {"s3:PutObject", "s3:DeleteObject"} <= actions
                    and principal.endswith("/" + phys["RegistryRole"]),
                    f"{bucket}: only the registry's role may write compiled/ and "
                    "control/registry/", policy)
            resources, actions, principal = only("OnlyTheRegistryWritesVerdicts")
            r.check(resources == [f"arn:aws:s3:::{rules}/rules/*/status.json"]
                    and "s3:PutObject" in actions
                    and principal.endswith("/" + phys["RegistryRole"]),
                    f"{bucket}: only the registry's role may write rules/*/status.json", policy)
            resources, actions, principal = only("OnlyTheApiWritesWebhookSecrets")
            r.check(resources == [f"arn:aws:s3:::{rules}/control/tenants/*/webhook-secrets/*"]
                    and {"s3:PutObject", "s3:DeleteObject"} <= actions
                    and principal.endswith("/" + phys["ApiRole"]),
                    f"{bucket}: only the API's role may write webhook secrets", policy)
            denied = [s for s in statements(policy) if s.get("Sid") == "NoFunctionWritesLimitsOrKeys"]
            r.check(len(denied) == 1 and len(denied[0]["Condition"]["ArnEquals"]["aws:PrincipalArn"]) == 5,
                    f"{bucket}: no function's role may write limits or keys", policy)

    # moto's CloudFormation creates buckets with their name, encryption and tags only, and
    # ignores the other properties: those are checked on the template, resolved with this
    # stack's parameters and physical ids.
    for logical in ("DataBucket", "RulesBucket"):
        props = d.resolver.value(d.resource(logical)["Properties"])
        r.equal(props["PublicAccessBlockConfiguration"],
                {k: True for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls",
                                   "RestrictPublicBuckets")},
                f"{logical} (template): all four Block Public Access flags")
        r.equal(props["OwnershipControls"], {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                f"{logical} (template): ACLs disabled")
    data_props = d.resolver.value(d.resource("DataBucket")["Properties"])
    rules_props = d.resolver.value(d.resource("RulesBucket")["Properties"])
    r.equal(rules_props["VersioningConfiguration"], {"Status": "Enabled"},
            "RulesBucket (template): versioning")
    lifecycle = {rule["Id"]: rule for rule in data_props["LifecycleConfiguration"]["Rules"]}
    tiering = lifecycle["logs-tiering"]
    r.equal((tiering["Prefix"], [(t["StorageClass"], int(t["TransitionInDays"]))
                                 for t in tiering["Transitions"]]),
            ("logs/", [("STANDARD_IA", int(p["LogsInfrequentAccessDays"])),
                       ("GLACIER", int(p["LogsGlacierDays"]))]),
            "DataBucket (template): logs/ -> STANDARD_IA -> GLACIER")
    expiry = tiering.get("ExpirationInDays")
    r.equal(None if expiry is None else int(expiry), int(p["LogsExpirationDays"]) or None,
            "DataBucket (template): logs/ expiration only when LogsExpirationDays > 0")
    r.equal({k: (v.get("Prefix"), int(v["ExpirationInDays"])) for k, v in lifecycle.items()
             if k in ("raw-expiry", "dlq-expiry", "partials-expiry")},
            {"raw-expiry": ("raw/", int(p["RawExpirationDays"])),
             "dlq-expiry": ("dlq/", int(p["DeadLetterExpirationDays"])),
             "partials-expiry": ("windows/partials/", int(p["PartialsExpirationDays"]))},
            "DataBucket (template): raw/, dlq/ and windows/partials/ expire")
    registry_arn = aws.lambda_.get_function(
        FunctionName=phys["RegistryFunction"])["Configuration"]["FunctionArn"]
    filters = sorted(
        (c["Event"], c["Function"]) + tuple(sorted((f["Name"], f["Value"])
                                                   for f in c["Filter"]["S3Key"]["Rules"]))
        for c in rules_props["NotificationConfiguration"]["LambdaConfigurations"])
    r.equal(filters, sorted([
        (event, registry_arn, ("prefix", "rules/"), ("suffix", suffix))
        for event in ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
        for suffix in ("/module.wasm", "/rule.toml")
    ] + [("s3:ObjectCreated:*", registry_arn, ("prefix", "rules/"), ("suffix", "/rollback.json"))]),
        "RulesBucket (template): module.wasm and rule.toml changes and rollback requests invoke "
        "registry (its own status.json does not)")
    perm = json.loads(aws.lambda_.get_policy(FunctionName=phys["RegistryFunction"])["Policy"])
    s3_perm = [s for s in statements(perm) if s["Principal"] == {"Service": "s3.amazonaws.com"}]
    r.equal([s["Condition"]["ArnLike"]["AWS:SourceArn"] for s in s3_perm],
            [f"arn:aws:s3:::{rules}"], "registry: invoke permission scoped to the rules bucket")

    # Functions. moto's CloudFormation ignores Architectures, LoggingConfig and
    # DeadLetterConfig: those are checked on the resolved template.
    functions = {}
    for logical, (binary, short) in FUNCTIONS.items():
        conf = aws.lambda_.get_function(FunctionName=phys[logical])["Configuration"]
        functions[logical] = conf
        r.equal((conf["Runtime"], conf["Handler"]), ("provided.al2023", "bootstrap"),
                f"{short}: provided.al2023, handler bootstrap")
        props = d.resolver.value(d.resource(logical)["Properties"])
        r.equal((conf["MemorySize"], conf["Timeout"]), (props["MemorySize"], props["Timeout"]),
                f"{short}: memory {props['MemorySize']} MB, timeout {props['Timeout']} s")
        r.equal(props["Architectures"], [p["Architecture"]],
                f"{short} (template): architecture {p['Architecture']}")
        env = {"SLUICE_DATA_BUCKET": data, "SLUICE_RULES_BUCKET": rules, "RUST_LOG": p["LogLevel"]}
        if short in ("aggregate", "evaluate"):
            env["SLUICE_WINDOW_SECONDS"] = p["TumblingWindowSeconds"]
            env["SLUICE_ALLOWED_LATENESS_SECONDS"] = p["AllowedLatenessSeconds"]
            # Partials and work items per tenant bucket (docs/ARCHITECTURE.md §12).
            env["SLUICE_TENANT_BUCKETS"] = p["TenantBuckets"]
        if short == "evaluate":
            # The scheduled function is the planner: it queues one item per (window, bucket).
            env["SLUICE_EVALUATE_ROLE"] = "planner"
            env["SLUICE_WORK_QUEUE_URL"] = phys["EvaluationWorkQueue"]
        if short == "ingest":
            # The ingest limits (sluice_core::ingest::INGEST_ENV), at their defaults.
            env.update({
                "SLUICE_MAX_RECORD_BYTES": "1048576",
                "SLUICE_MAX_DECOMPRESSED_BYTES": "16777216",
                "SLUICE_MAX_BATCH_DECODED_BYTES": "134217728",
                "SLUICE_MAX_PAST_SECONDS": "2592000",
                "SLUICE_MAX_FUTURE_SECONDS": "3600",
                "SLUICE_ZSTD_LEVEL": "1",
            })
        if short == "compact":
            env["SLUICE_COMPACT_LATENESS_SECONDS"] = p["CompactLatenessSeconds"]
        if short in ("aggregate", "evaluate"):
            # How long a quiet shard's first report may take follows aggregate's batching window
            # (evaluate's readiness; the delay of aggregate's planner wake-ups).
            env["SLUICE_AGGREGATE_BATCHING_WINDOW_SECONDS"] = p["AggregateBatchingWindowSeconds"]
        if short == "aggregate":
            # A shard's finished window wakes the planner (docs/ARCHITECTURE.md §12).
            env["SLUICE_PLANNER_WAKE_QUEUE_URL"] = phys["PlannerWakeQueue"]
        # moto keeps a Number parameter's value as a number; Lambda makes every value a string.
        actual = {k: str(v) for k, v in conf["Environment"]["Variables"].items()}
        r.equal(actual, env, f"{short}: environment")
        group = phys[logical.replace("Function", "LogGroup")]
        r.equal(props["LoggingConfig"], {"LogFormat": "JSON", "LogGroup": group},
                f"{short} (template): JSON logs into its own log group")
        groups = aws.logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
        # The prefix also matches evaluate-worker's and evaluate-delivery's groups.
        r.equal([g.get("retentionInDays") for g in groups if g["logGroupName"] == group],
                [int(p["LogRetentionDays"])],
                f"{short}: log group {group}, retention {p['LogRetentionDays']} days")

    # Event source mappings
    queue_arn = d.getatt("StreamFailureQueue", "Arn")
    for logical, prefix, window in (("IngestFunction", "Ingest", None),
                                    ("AggregateFunction", "Aggregate", "TumblingWindowSeconds")):
        short = FUNCTIONS[logical][1]
        esms = aws.lambda_.list_event_source_mappings(
            FunctionName=phys[logical])["EventSourceMappings"]
        r.equal(len(esms), 1, f"{short}: one event source mapping")
        esm = esms[0]
        expected = {
            "EventSourceArn": stream_arn,
            "BatchSize": int(p[f"{prefix}BatchSize"]),
            "MaximumBatchingWindowInSeconds": int(p[f"{prefix}BatchingWindowSeconds"]),
            "ParallelizationFactor": int(p[f"{prefix}ParallelizationFactor"]),
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": int(p["StreamMaximumRetryAttempts"]),
            "MaximumRecordAgeInSeconds": int(p["StreamMaximumRecordAgeSeconds"]),
            "DestinationConfig": {"OnFailure": {"Destination": queue_arn}},
            "StartingPosition": "TRIM_HORIZON",
        }
        if window:
            expected["TumblingWindowInSeconds"] = int(p[window])
        actual = {k: esm.get(k) for k in expected}
        r.equal(actual, expected, f"{short}: event source mapping settings "
                f"({', '.join(f'{k}={v}' for k, v in expected.items() if k in ('BatchSize', 'TumblingWindowInSeconds'))})")
    # The planner is woken by aggregate through its wake queue, besides its schedule.
    wake_arn = d.getatt("PlannerWakeQueue", "Arn")
    esms = aws.lambda_.list_event_source_mappings(
        FunctionName=phys["EvaluateFunction"])["EventSourceMappings"]
    r.equal([(m.get("EventSourceArn"), m.get("BatchSize")) for m in esms], [(wake_arn, 10)],
            "evaluate planner: woken through the wake queue aggregate writes to")
    esm = aws.lambda_.list_event_source_mappings(
        FunctionName=phys["IngestFunction"])["EventSourceMappings"][0]
    r.check("TumblingWindowInSeconds" not in esm or not esm["TumblingWindowInSeconds"],
            "ingest: no tumbling window", esm.get("TumblingWindowInSeconds"))

    # Schedule
    evaluate_arn = functions["EvaluateFunction"]["FunctionArn"]
    rules_found = []
    for rule in aws.events.list_rules()["Rules"]:
        targets = aws.events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        if any(t["Arn"] == evaluate_arn for t in targets):
            rules_found.append(rule)
    r.equal([(x.get("ScheduleExpression"), x.get("State")) for x in rules_found],
            [("rate(1 minute)", "ENABLED")], "evaluate: EventBridge schedule rate(1 minute)")
    reserved = aws.lambda_.get_function_concurrency(
        FunctionName=phys["EvaluateFunction"]).get("ReservedConcurrentExecutions")
    r.equal(reserved, int(p["EvaluateReservedConcurrency"]) or None,
            "evaluate: reserved concurrency only when EvaluateReservedConcurrency is 1")
    invoke = aws.lambda_.get_function_event_invoke_config(FunctionName=phys["EvaluateFunction"])
    r.equal((invoke["MaximumRetryAttempts"], invoke["MaximumEventAgeInSeconds"]), (0, 60),
            "evaluate: stale scheduled runs are not retried")
    for logical in ("EvaluateFunction", "RegistryFunction"):
        props = d.resolver.value(d.resource(logical)["Properties"])
        r.equal(props.get("DeadLetterConfig"), {"TargetArn": d.getatt("AsyncFailureQueue", "Arn")},
                f"{FUNCTIONS[logical][1]} (template): failed async invocations go to a queue")

    # Least privilege: S3 grants per role, exactly
    role = {logical: conf["Role"].rsplit("/", 1)[1] for logical, conf in functions.items()}
    da, ra = f"arn:aws:s3:::{data}", f"arn:aws:s3:::{rules}"
    expected_grants = {
        "IngestFunction": {f"{da}/raw/*": {"s3:PutObject"}, f"{da}/dlq/*": {"s3:PutObject"}},
        "CompactFunction": {
            da: {"s3:ListBucket"},
            f"{da}/raw/*": {"s3:GetObject"},
            f"{da}/logs/*": {"s3:GetObject", "s3:PutObject"},
            f"{da}/control/compaction/*": {"s3:GetObject", "s3:PutObject"},
        },
        "AggregateFunction": {f"{da}/windows/partials/*": {"s3:PutObject"},
                              f"{da}/windows/progress/*": {"s3:PutObject"}},
        # The planner: shard progress and its watermark, nothing of the tenants'.
        "EvaluateFunction": {
            da: {"s3:ListBucket"},
            f"{da}/windows/progress/*": {"s3:GetObject"},
            f"{da}/windows/state/*": {"s3:GetObject", "s3:PutObject"},
        },
        "RegistryFunction": {
            ra: {"s3:ListBucket"},
            f"{ra}/rules/*": {"s3:GetObject"},
            f"{ra}/control/tenants/*/limits.json": {"s3:GetObject"},
            f"{ra}/compiled/*": {"s3:PutObject", "s3:DeleteObject"},
            f"{ra}/control/registry/*": {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
            f"{ra}/rules/*/status.json": {"s3:PutObject", "s3:DeleteObject"},
            f"{ra}/rules/*/rollback.json": {"s3:DeleteObject"},
        },
    }
    for logical, want in expected_grants.items():
        r.equal(s3_grants(aws, role[logical]), want,
                f"{FUNCTIONS[logical][1]}: S3 access limited to its own prefixes and actions")
    r.check(len(set(role.values())) == len(FUNCTIONS), "each function has its own role")

    # Glue catalog (applied through the Glue API: moto's CloudFormation has no Glue)
    db = p["GlueDatabaseName"]
    logs = aws.glue.get_table(DatabaseName=db, Name="logs")["Table"]
    cols = [(c["Name"], c["Type"]) for c in logs["StorageDescriptor"]["Columns"]]
    r.equal(cols, LOGS_COLUMNS, "Glue logs table: canonical columns and types")
    r.equal([(k["Name"], k["Type"]) for k in logs["PartitionKeys"]],
            [("tenant", "string"), ("dt", "string"), ("hour", "string")],
            "Glue logs table: partitions tenant, dt, hour")
    lp = logs["Parameters"]
    r.equal({k: lp.get(k) for k in ("projection.enabled", "projection.tenant.type",
                                    "projection.dt.type", "projection.hour.type",
                                    "storage.location.template")},
            {"projection.enabled": "true", "projection.tenant.type": "injected",
             "projection.dt.type": "date", "projection.hour.type": "integer",
             "storage.location.template":
                 f"s3://{data}/logs/tenant=${{tenant}}/dt=${{dt}}/hour=${{hour}}/"},
            "Glue logs table: partition projection")
    r.equal(logs["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"],
            "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe", "Glue logs table: Parquet")
    metrics = aws.glue.get_table(DatabaseName=db, Name="metrics")["Table"]
    r.equal([c["Name"] for c in metrics["StorageDescriptor"]["Columns"]], METRICS_COLUMNS,
            "Glue metrics table: the columns of sluice-core's metrics Parquet")
    r.equal(metrics["Parameters"].get("storage.location.template"),
            f"s3://{data}/metrics/tenant=${{tenant}}/dt=${{dt}}/hour=${{hour}}/",
            "Glue metrics table: partition projection")

    # Failure queues, the key for operational data
    for logical in ("StreamFailureQueue", "AsyncFailureQueue"):
        attrs = aws.sqs.get_queue_attributes(QueueUrl=phys[logical],
                                             AttributeNames=["All"])["Attributes"]
        policy = json.loads(attrs.get("Policy", '{"Statement": []}'))
        r.check(attrs.get("SqsManagedSseEnabled") == "true"
                and attrs.get("MessageRetentionPeriod") == "1209600"
                and any(s["Effect"] == "Deny" for s in statements(policy)),
                f"{logical}: SSE, 14 days retention, TLS-only policy", attrs)
    key = phys["OpsKey"]
    key_policy = aws.kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]
    key_policy = json.loads(key_policy) if isinstance(key_policy, str) else key_policy
    r.check(aws.kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"]
            and {"CloudWatchLogs", "CloudWatchAlarmsPublish"}
            <= {s.get("Sid") for s in statements(key_policy)},
            "OpsKey: rotation on; CloudWatch Logs and alarms may use it")
    r.equal(aws.sns.get_topic_attributes(TopicArn=phys["AlarmTopic"])["Attributes"]
            .get("KmsMasterKeyId"), key, "alarm topic encrypted with OpsKey")

    # Alarms, topic, dashboard
    topic = phys["AlarmTopic"]
    alarms = aws.cloudwatch.describe_alarms(AlarmNamePrefix=f"{d.name}-")["MetricAlarms"]
    by_metric = sorted((a.get("Namespace", ""), a.get("MetricName", "")) for a in alarms)
    r.check(by_metric.count(("AWS/Lambda", "IteratorAge")) == 2
            and by_metric.count(("AWS/Lambda", "Errors")) == 4
            and by_metric.count(("AWS/SQS", "ApproximateNumberOfMessagesVisible")) == 2
            and ("sluice", "RuleFailures") in by_metric
            and ("sluice", "NotificationsUndelivered") in by_metric
            and any(a.get("Metrics") for a in alarms),
            "alarms: iterator age x2, errors x4, throttles, failure queues x2, rule failures, "
            "undelivered notifications",
            by_metric)
    r.check(all(a["AlarmActions"] == [topic] for a in alarms), "alarms notify the SNS topic")
    subs = aws.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    r.equal([(s["Protocol"], s["Endpoint"]) for s in subs],
            [("email", p["AlarmEmail"])] if p["AlarmEmail"] else [],
            "alarm email subscription only when AlarmEmail is set")
    body = json.loads(aws.cloudwatch.get_dashboard(DashboardName=phys["Dashboard"])["DashboardBody"])
    r.check(len(body["widgets"]) >= 6 and "${" not in json.dumps(body),
            "dashboard: widgets with every reference resolved", len(body["widgets"]))

    # Outputs
    out = d.outputs
    r.equal((out.get("StreamName"), out.get("DataBucketName"), out.get("RulesBucketName")),
            (phys["LogStream"], data, rules), "outputs: stream and bucket names")
    r.check("tenant =" in (out.get("AthenaExampleQuery") or ""), "outputs: Athena example query",
            out.get("AthenaExampleQuery"))


def check_deleted(r: Report, d: Deployment) -> None:
    status = d.aws.cloudformation.describe_stacks(StackName=d.stack["StackId"])["Stacks"][0]
    r.equal(status["StackStatus"], "DELETE_COMPLETE", f"{d.name}: deleted")
    names = {b["Name"] for b in d.aws.s3.list_buckets()["Buckets"]}
    r.check({d.physical["DataBucket"], d.physical["RulesBucket"]} <= names,
            f"{d.name}: both buckets kept after deletion (DeletionPolicy Retain)")
    left = {f["FunctionName"] for f in d.aws.lambda_.list_functions()["Functions"]}
    r.check(not left & {d.physical[k] for k in FUNCTIONS}, f"{d.name}: functions removed")


def check_template(r: Report, source: dict[str, Any], translated: dict[str, Any]) -> None:
    """What moto accepts but does not keep (or report), asserted on the template itself."""
    res = translated["Resources"]
    stream = res["LogStream"]["Properties"]
    r.equal(stream["StreamEncryption"], {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
            "template: stream encrypted with alias/aws/kinesis")
    r.equal(stream["StreamModeDetails"], {"StreamMode": {"Ref": "StreamMode"}},
            "template: stream mode from the StreamMode parameter")
    for logical, (binary, short) in FUNCTIONS.items():
        fn = source["Resources"][logical]
        r.equal((fn["Metadata"]["BuildMethod"], fn["Metadata"]["BuildProperties"]["Binary"]),
                ("rust-cargolambda", binary), f"template: {short} builds {binary} with cargo-lambda")
    r.equal(source["Globals"]["Function"]["CodeUri"], "..",
            "template: CodeUri is the cargo workspace root")
    for logical in FUNCTIONS:
        r.check(res[logical]["Properties"].get("MemorySize", 0) >= 512
                and res[logical]["Properties"].get("Timeout", 0) >= 30,
                f"template: {FUNCTIONS[logical][1]} memory and timeout set")


def main(r: Report) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, default=ROOT / "infra" / "template.yaml")
    parser.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL"))
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    parser.add_argument("--keep", action="store_true", help="leave the stacks in moto")
    args = parser.parse_args()
    if not args.endpoint:
        parser.error("no endpoint: pass --endpoint or set AWS_ENDPOINT_URL (a moto server)")

    source = load_template(args.template)
    translated = translate(package(source))
    kinds = sorted({v["Type"] for v in translated["Resources"].values()})
    print(f"translated {args.template.name}: {len(translated['Resources'])} resources "
          f"({len(kinds)} types)")
    check_template(r, source, translated)

    aws = Aws(args.endpoint, args.region)
    aws.s3.create_bucket(Bucket=ARTIFACTS)
    code = dummy_zip()
    for logical in FUNCTIONS:
        aws.s3.put_object(Bucket=ARTIFACTS, Key=f"{logical}.zip", Body=code)

    run = f"{int(time.time())}"
    deployments = []
    # Every parameter at its default, but the Glue database: Glue names are per account and
    # region, and moto may still hold the one from an earlier run.
    defaults = {"GlueDatabaseName": f"sluice_{run}"}
    overrides = {**OVERRIDES, "GlueDatabaseName": f"sluice_overrides_{run}"}
    for label, params in (("defaults", defaults), ("overrides", overrides)):
        name = f"sluice-{label}-{run}"
        print(f"\nstack {name} ({label}{': ' + ', '.join(f'{k}={v}' for k, v in params.items()) if params else ''})")
        d = Deployment(aws, name, translated, params)
        print(f"  moto CloudFormation created {len(d.resources)} of "
              f"{len(translated['Resources'])} resources")
        d.apply_skipped()
        check_deployment(r, d, params)
        deployments.append(d)

    skipped = sorted({d.resource(k)["Type"] for d in deployments for k in d.applied})
    print(f"\nmoto CloudFormation skipped these types (applied through their APIs): "
          f"{', '.join(skipped) or 'none'}")
    if not args.keep:
        print("\ndeleting the stacks")
        for d in deployments:
            d.delete()
            check_deleted(r, d)
    print(f"{r.passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    report = Report()
    try:
        sys.exit(main(report))
    except CheckFailed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        print(f"{report.passed} passed, 1 failed")
        sys.exit(1)
