// Renders every overlay of deploy/kubernetes with `kubectl kustomize`, validates every object
// against the Kubernetes, KEDA and Prometheus Operator schemas (kubernetes-models), and checks
// promptloop's own invariants against the source that defines them (stages, topics, consumer
// groups, ports, shutdown, the liveness handler). No cluster is needed.
//
//   node tests/deploy/validate.mjs [--manifests DIR] [--overlay NAME]...
//   node tests/deploy/validate.mjs --self-test   (every check must catch a broken copy)
//
// Exit status 0 when every check passed. The last line is "deploy: N passed, M failed".

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import { parseLibconfig } from "./libconfig.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const read = (rel) => fs.readFileSync(path.join(ROOT, rel), "utf8");

// Environment variables that carry secrets: only ever from a Secret (config/promptloop.cfg).
const SECRET_ENV = ["PL_PG_DSN", "PL_LLM_API_KEY", "PL_AUDIT_KEY"];
const SECRET_NAME = /(PASSWORD|PASSWD|TOKEN|SECRET|API_KEY|_DSN)$|^PL_AUDIT_KEY$/;
// Credentials inside a URL: scheme://user:password@host
const URL_CREDENTIALS = /[a-z][a-z0-9+.-]*:\/\/[^\s/:@]+:[^\s/@]+@/i;

// ---- what the source says ------------------------------------------------------------------

function must(re, text, what) {
  const m = re.exec(text);
  if (!m) throw new Error(`cannot find ${what} in the source: update tests/deploy/validate.mjs`);
  return m;
}

function readFacts() {
  const configC = read("common/config.c");
  const facts = {
    stages: [...read("services/CMakeLists.txt").matchAll(/add_executable\(pl-([a-z]+)\b/g)].map((m) => m[1]),
    ports: Object.fromEntries(
      [
        ...must(/ports\[\] = \{([^;]*)\};/s, configC, "the default ports")[1].matchAll(/\{"(\w+)", (\d+)\}/g),
      ].map((m) => [m[1], Number(m[2])]),
    ),
    topicDefaults: Object.fromEntries(
      [
        ...configC.matchAll(/snprintf\(cfg->kafka_(topic_\w+), sizeof\(cfg->kafka_topic_\w+\), "([^"]+)"\)/g),
      ].map((m) => [m[1], m[2]]),
    ),
    sessionTimeoutMs: Number(
      must(/cfg->kafka_session_timeout_ms = (\d+);/, configC, "session_timeout_ms")[1],
    ),
    deliveryTimeoutMs: Number(
      must(/cfg->kafka_delivery_timeout_ms = (\d+);/, configC, "delivery_timeout_ms")[1],
    ),
    brokersDefault: must(
      /snprintf\(cfg->kafka_brokers, sizeof\(cfg->kafka_brokers\), "([^"]+)"\)/,
      configC,
      "brokers",
    )[1],
    offsetReset: must(/"auto\.offset\.reset", "(\w+)"/, read("common/kafka.c"), "auto.offset.reset")[1],
    flushMs: Number(
      must(/pl_producer_destroy\(svc->producer, (\d+)\)/, read("common/service.c"), "the flush timeout")[1],
    ),
    config: read("config/promptloop.cfg"),
    consumers: {},
    llm: {},
  };
  // The consumer group: pl-<service> unless configured, for every service but the api.
  must(
    /if \(strcmp\(service, "api"\) != 0\)\s*snprintf\(cfg->kafka_group_id, sizeof\(cfg->kafka_group_id\), "pl-%s", service\);/,
    configC,
    "the default consumer group",
  );
  facts.defaultGroup = (stage) => (stage === "api" ? "" : `pl-${stage}`);
  for (const stage of facts.stages) {
    const dir = path.join(ROOT, "services", stage);
    const main = fs.readFileSync(path.join(dir, "main.c"), "utf8");
    const m = /const char \*topics\[\] = \{([^}]*)\}/.exec(main);
    if (m) facts.consumers[stage] = [...m[1].matchAll(/kafka_(topic_\w+)/g)].map((t) => t[1]);
    facts.llm[stage] = fs
      .readdirSync(dir)
      .some((f) => f.endsWith(".c") && /\bpl_llm_/.test(fs.readFileSync(path.join(dir, f), "utf8")));
  }
  // Liveness must not depend on PostgreSQL or Kafka: the handler behind /healthz touches neither.
  const service = read("common/service.c");
  const route = must(/\{"GET", "\/healthz", (\w+)\}/, service, "the /healthz route")[1];
  const body = must(
    new RegExp(`static void ${route}\\([^)]*\\)\\s*\\{([\\s\\S]*?)\\n\\}`),
    service,
    `${route}`,
  )[1];
  facts.healthzPure = !/pg|kafka|producer|consumer|svc|user/i.test(body.replace(/\/\*[\s\S]*?\*\//g, ""));
  return facts;
}

// ---- rendering and schemas -------------------------------------------------------------------

function kustomizeVersion() {
  let out;
  try {
    out = execFileSync("kubectl", ["version", "--client"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (e) {
    throw new Error(`kubectl not usable (${e.code || e.message}): it comes with this machine's image`);
  }
  const m = /Kustomize Version: v(\d+)/.exec(out);
  if (!m || Number(m[1]) < 5)
    throw new Error(
      `kubectl's kustomize is older than v5 (${out.trim().replace(/\n/g, "; ")}): the overlays need v5`,
    );
  return out.trim().split("\n").join("; ");
}

function render(dir) {
  const out = execFileSync("kubectl", ["kustomize", dir], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  return YAML.parseAllDocuments(out)
    .map((d) => {
      if (d.errors.length) throw new Error(`rendered YAML: ${d.errors[0].message}`);
      return d.toJS();
    })
    .filter(Boolean);
}

const modelCache = new Map();
async function model(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  let spec;
  if (group === "keda.sh") spec = `@kubernetes-models/keda/keda.sh/${version}/${kind}`;
  else if (group === "monitoring.coreos.com")
    spec = `@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}/${kind}`;
  else spec = `kubernetes-models/${group ? `${group}/` : ""}${version}/${kind}`;
  if (!modelCache.has(spec)) {
    modelCache.set(spec, await import(spec).then((m) => m[kind]).catch(() => null));
  }
  return modelCache.get(spec);
}

// ---- helpers ---------------------------------------------------------------------------------

const id = (o) => `${o.kind}/${o.metadata?.name}`;
const podSpecOf = (o) =>
  ["Deployment", "Job", "StatefulSet", "DaemonSet"].includes(o.kind) ? o.spec?.template?.spec : null;
const containersOf = (ps) => [...(ps.initContainers ?? []), ...(ps.containers ?? [])];
const selects = (selector, labels) =>
  !!selector &&
  Object.keys(selector).length > 0 &&
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);

function envOf(c, configMaps, problems, where) {
  const env = {};
  for (const ef of c.envFrom ?? []) {
    if (ef.configMapRef) {
      const cm = configMaps.get(ef.configMapRef.name);
      if (!cm) problems.push(`${where}: envFrom names a missing ConfigMap ${ef.configMapRef.name}`);
      for (const [k, v] of Object.entries(cm?.data ?? {}))
        env[(ef.prefix ?? "") + k] = { value: v, from: `ConfigMap ${ef.configMapRef.name}` };
    }
    if (ef.secretRef) env[`*${ef.secretRef.name}`] = { secretFrom: ef.secretRef.name };
  }
  for (const e of c.env ?? []) {
    if ("value" in e) env[e.name] = { value: e.value, literal: true };
    else if (e.valueFrom?.secretKeyRef) env[e.name] = { secret: e.valueFrom.secretKeyRef };
    else if (e.valueFrom?.configMapKeyRef) {
      const ref = e.valueFrom.configMapKeyRef;
      const cm = configMaps.get(ref.name);
      if (!cm) problems.push(`${where}: ${e.name} names a missing ConfigMap ${ref.name}`);
      env[e.name] = { value: cm?.data?.[ref.key], from: `ConfigMap ${ref.name}` };
    } else env[e.name] = { other: true };
  }
  return env;
}

// The file a container reads with --config, from the ConfigMap mounted there.
function configFileOf(c, ps, configMaps) {
  const argv = [...(c.command ?? []), ...(c.args ?? [])];
  const i = argv.indexOf("--config");
  if (i < 0 || !argv[i + 1]) return null;
  const file = argv[i + 1];
  for (const m of c.volumeMounts ?? []) {
    if (!file.startsWith(`${m.mountPath.replace(/\/$/, "")}/`)) continue;
    const vol = (ps.volumes ?? []).find((v) => v.name === m.name);
    if (!vol?.configMap) continue;
    const rel = file.slice(m.mountPath.replace(/\/$/, "").length + 1);
    const item = (vol.configMap.items ?? []).find((it) => it.path === rel);
    const key = item ? item.key : vol.configMap.items ? null : rel;
    const text = configMaps.get(vol.configMap.name)?.data?.[key];
    if (text !== undefined) return { path: file, configMap: vol.configMap.name, text };
  }
  return { path: file, text: undefined };
}

function probeTarget(probe) {
  if (!probe) return null;
  if (probe.exec || probe.tcpSocket || probe.grpc) return { kind: "other" };
  return probe.httpGet
    ? { kind: "http", path: probe.httpGet.path, port: probe.httpGet.port }
    : { kind: "other" };
}

// ---- the checks ------------------------------------------------------------------------------

async function checkOverlay(name, objs, facts) {
  const results = [];
  const check = (label, fn) => {
    const problems = [];
    try {
      fn(problems);
    } catch (e) {
      problems.push(`check crashed: ${e.stack || e}`);
    }
    results.push({ label: `${name}: ${label}`, problems });
  };

  // Schemas: every object, Kubernetes and CRDs alike; an object without a schema fails.
  const schemaProblems = [];
  for (const o of objs) {
    const Model = o.apiVersion && o.kind ? await model(o.apiVersion, o.kind) : null;
    if (!Model) {
      schemaProblems.push(`${id(o)}: no schema for ${o.apiVersion} ${o.kind}`);
      continue;
    }
    try {
      new Model(o).validate();
    } catch (e) {
      schemaProblems.push(`${id(o)} (${o.apiVersion}) fails its schema: ${e.message}`);
    }
  }
  results.push({ label: `${name}: every object validates against its schema`, problems: schemaProblems });

  const byKind = (k) => objs.filter((o) => o.kind === k);
  const configMaps = new Map(byKind("ConfigMap").map((c) => [c.metadata.name, c]));
  const deployments = new Map(byKind("Deployment").map((d) => [d.metadata.name, d]));
  const podObjects = objs.filter(podSpecOf);

  // Each stage: its Deployment, its container running pl-<stage> and what that container reads.
  const stage = {};
  check("every stage has its Deployment, running its executable with the config file", (p) => {
    for (const s of facts.stages) {
      const d = deployments.get(`pl-${s}`);
      if (!d) {
        p.push(`Deployment pl-${s} is missing`);
        continue;
      }
      const ps = d.spec.template.spec;
      const c = (ps.containers ?? []).find((x) => (x.command ?? [])[0] === `pl-${s}`);
      if (!c) {
        p.push(`Deployment pl-${s} has no container whose command runs pl-${s}`);
        continue;
      }
      const cfg = configFileOf(c, ps, configMaps);
      if (!cfg) p.push(`pl-${s}: no --config: config/promptloop.cfg (the ConfigMap) is not read`);
      else if (cfg.text === undefined)
        p.push(`pl-${s}: --config ${cfg.path} is not a file of a mounted ConfigMap`);
      else if (cfg.text !== facts.config)
        p.push(
          `pl-${s}: ConfigMap ${cfg.configMap} differs from config/promptloop.cfg; ` +
            "cp config/promptloop.cfg deploy/kubernetes/base/promptloop.cfg",
        );
      const env = envOf(c, configMaps, p, `pl-${s}`);
      let file = {};
      try {
        file = cfg?.text ? parseLibconfig(cfg.text) : {};
      } catch (e) {
        p.push(`pl-${s}: ${e.message}`);
      }
      const get = (section, key, def) => {
        const e = env[`PL_${section}_${key}`.toUpperCase()];
        if (e && "value" in e) return e.value;
        return file[section]?.[key] ?? def;
      };
      stage[s] = {
        deployment: d,
        podSpec: ps,
        container: c,
        env,
        group: String(get("kafka", "group_id", "") || facts.defaultGroup(s)),
        brokers: String(get("kafka", "brokers", facts.brokersDefault)),
        port: Number(get("http", "port", facts.ports[s])),
        sessionMs: Number(get("kafka", "session_timeout_ms", facts.sessionTimeoutMs)),
        deliveryMs: Number(get("kafka", "delivery_timeout_ms", facts.deliveryTimeoutMs)),
        topics: Object.fromEntries(
          Object.entries(facts.topicDefaults).map(([k, v]) => [k, String(get("kafka", k, v))]),
        ),
      };
    }
    for (const d of deployments.keys())
      if (!facts.stages.includes(d.replace(/^pl-/, "")))
        p.push(`Deployment ${d} is no stage of services/CMakeLists.txt`);
  });
  const stages = () => facts.stages.filter((s) => stage[s]);
  const resolvePort = (c, port) =>
    typeof port === "number" ? port : (c.ports ?? []).find((x) => x.name === port)?.containerPort;

  check("the config ConfigMap equals config/promptloop.cfg and holds no secret", (p) => {
    const cms = byKind("ConfigMap").filter((c) => c.data?.["promptloop.cfg"] !== undefined);
    if (cms.length === 0) p.push("no ConfigMap carries promptloop.cfg");
    for (const cm of cms) {
      if (cm.data["promptloop.cfg"] !== facts.config)
        p.push(
          `${id(cm)} differs from config/promptloop.cfg: cp config/promptloop.cfg deploy/kubernetes/base/promptloop.cfg`,
        );
      const cfg = parseLibconfig(cm.data["promptloop.cfg"]);
      if (cfg.llm?.api_key) p.push(`${id(cm)}: llm.api_key is set in plain text`);
      if (cfg.audit?.key) p.push(`${id(cm)}: audit.key is set in plain text`);
      if (URL_CREDENTIALS.test(cfg.pg?.dsn ?? "") || /password\s*=/i.test(cfg.pg?.dsn ?? ""))
        p.push(`${id(cm)}: pg.dsn carries a password`);
    }
  });

  check("no Secret value in plain text: Secrets are only referenced", (p) => {
    for (const o of objs)
      if (o.kind === "Secret") p.push(`${id(o)} is rendered: Secrets are created outside the manifests`);
    for (const cm of byKind("ConfigMap"))
      for (const k of Object.keys({ ...cm.data, ...cm.binaryData }))
        if (SECRET_ENV.includes(k) || SECRET_NAME.test(k)) p.push(`${id(cm)} has a secret-like key ${k}`);
    for (const o of podObjects)
      for (const c of containersOf(podSpecOf(o)))
        for (const e of c.env ?? [])
          if ((SECRET_ENV.includes(e.name) || SECRET_NAME.test(e.name)) && !e.valueFrom?.secretKeyRef)
            p.push(`${id(o)} container ${c.name}: ${e.name} is not from a Secret (secretKeyRef)`);
    // Credentials inside any URL anywhere (a DSN, a broker address, an LLM URL).
    const walk = (v, where) => {
      if (typeof v === "string") {
        if (URL_CREDENTIALS.test(v)) p.push(`${where}: a URL with credentials`);
      } else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, `${where}.${k}`);
    };
    for (const o of objs) walk(o, id(o));
  });

  check(
    "every stage gets the DSN and the audit key from a Secret, and the LLM key where it calls one",
    (p) => {
      for (const s of stages()) {
        const { container: c, podSpec: ps, env } = stage[s];
        if (!env.PL_PG_DSN?.secret) p.push(`pl-${s}: PL_PG_DSN is not from a Secret`);
        const keyFile = env.PL_AUDIT_KEY_FILE?.value;
        if (keyFile) {
          const m = (c.volumeMounts ?? []).find((x) =>
            keyFile.startsWith(`${x.mountPath.replace(/\/$/, "")}/`),
          );
          const vol = m && (ps.volumes ?? []).find((v) => v.name === m.name);
          if (!vol?.secret) p.push(`pl-${s}: PL_AUDIT_KEY_FILE ${keyFile} is not on a Secret volume`);
        } else if (!env.PL_AUDIT_KEY?.secret)
          p.push(`pl-${s}: no audit key (PL_AUDIT_KEY or PL_AUDIT_KEY_FILE): it would not start`);
        if (facts.llm[s] && !env.PL_LLM_API_KEY?.secret)
          p.push(`pl-${s} calls the LLM: PL_LLM_API_KEY must come from a Secret`);
      }
    },
  );

  check("probes: startup and liveness on /healthz only, readiness on /readyz, on the service's port", (p) => {
    if (!facts.healthzPure)
      p.push("common/service.c: the /healthz handler touches the database, Kafka or the service");
    for (const s of stages()) {
      const { container: c, port } = stage[s];
      if ((c.ports ?? []).find((x) => x.name === "http")?.containerPort !== port)
        p.push(`pl-${s}: the container port named http is not the port the service listens on (${port})`);
      for (const [kind, want] of [
        ["startupProbe", "/healthz"],
        ["livenessProbe", "/healthz"],
        ["readinessProbe", "/readyz"],
      ]) {
        const t = probeTarget(c[kind]);
        const what = { startupProbe: "startup", livenessProbe: "liveness", readinessProbe: "readiness" }[
          kind
        ];
        if (!t) p.push(`pl-${s}: no ${what} probe`);
        else if (t.kind !== "http" || t.path !== want)
          p.push(`pl-${s}: the ${what} probe must be an HTTP GET of ${want}`);
        else if (resolvePort(c, t.port) !== port) p.push(`pl-${s}: the ${what} probe is not on port ${port}`);
      }
    }
    // Nothing else in a pod may restart it for an outage of PostgreSQL or Kafka.
    for (const o of podObjects)
      for (const c of containersOf(podSpecOf(o))) {
        const t = probeTarget(c.livenessProbe);
        if (t && (t.kind !== "http" || t.path !== "/healthz"))
          p.push(`${id(o)} container ${c.name}: liveness is not /healthz`);
      }
  });

  check("a restricted securityContext in every pod", (p) => {
    for (const o of podObjects) {
      const ps = podSpecOf(o);
      const psc = ps.securityContext ?? {};
      if (ps.hostNetwork || ps.hostPID || ps.hostIPC) p.push(`${id(o)}: host namespaces`);
      if ((ps.volumes ?? []).some((v) => v.hostPath)) p.push(`${id(o)}: a hostPath volume`);
      if (ps.automountServiceAccountToken !== false)
        p.push(`${id(o)}: automountServiceAccountToken is not false`);
      for (const c of containersOf(ps)) {
        const sc = c.securityContext ?? {};
        const w = `${id(o)} container ${c.name}`;
        if ((sc.runAsNonRoot ?? psc.runAsNonRoot) !== true) p.push(`${w}: runAsNonRoot is not true`);
        if ((sc.runAsUser ?? psc.runAsUser) === 0) p.push(`${w}: runAsUser 0`);
        if (sc.allowPrivilegeEscalation !== false) p.push(`${w}: allowPrivilegeEscalation is not false`);
        if (sc.readOnlyRootFilesystem !== true) p.push(`${w}: readOnlyRootFilesystem is not true`);
        if (sc.privileged) p.push(`${w}: privileged`);
        if (!(sc.capabilities?.drop ?? []).includes("ALL")) p.push(`${w}: capabilities do not drop ALL`);
        if ((sc.capabilities?.add ?? []).length) p.push(`${w}: adds capabilities`);
        if ((sc.seccompProfile ?? psc.seccompProfile)?.type !== "RuntimeDefault")
          p.push(`${w}: seccompProfile is not RuntimeDefault`);
        const promptloop = (c.command ?? [])[0]?.startsWith("pl-");
        if (promptloop && (sc.runAsUser ?? psc.runAsUser) !== facts.imageUser)
          p.push(`${w}: runAsUser is not the image's user ${facts.imageUser} (deploy/Dockerfile)`);
      }
    }
  });

  check("requests and limits for CPU and memory on every container", (p) => {
    for (const o of podObjects)
      for (const c of containersOf(podSpecOf(o)))
        for (const k of ["requests", "limits"])
          for (const r of ["cpu", "memory"])
            if (c.resources?.[k]?.[r] === undefined) p.push(`${id(o)} container ${c.name}: no ${k}.${r}`);
  });

  check("terminationGracePeriodSeconds exceeds the stage's shutdown", (p) => {
    for (const s of stages()) {
      const { deployment: d, sessionMs, deliveryMs } = stage[s];
      // SIGTERM: the batch in hand finishes (LLM calls are cut short), the consumer commits and
      // leaves its group (up to the session timeout), the outbox relay's last round waits for
      // its acks (delivery timeout), then the producer flushes (common/service.c).
      const boundMs = sessionMs + deliveryMs + facts.flushMs;
      const grace = d.spec.template.spec.terminationGracePeriodSeconds ?? 30;
      if (grace * 1000 <= boundMs)
        p.push(
          `pl-${s}: terminationGracePeriodSeconds ${grace} does not exceed the shutdown bound of ${boundMs} ms`,
        );
    }
  });

  check("migrations run before any stage: the pl-admin migrate Job and every stage's initContainer", (p) => {
    const isMigrate = (c) =>
      (c.command ?? []).join(" ") === "pl-admin migrate" &&
      !!c.env?.find((e) => e.name === "PL_PG_DSN" && e.valueFrom?.secretKeyRef);
    if (!byKind("Job").some((j) => (j.spec.template.spec.containers ?? []).some(isMigrate)))
      p.push("no Job runs pl-admin migrate (with PL_PG_DSN from a Secret)");
    for (const s of stages())
      if (!(stage[s].podSpec.initContainers ?? []).some(isMigrate))
        p.push(`pl-${s}: no initContainer runs pl-admin migrate first`);
  });

  // Topics and partitions, from the ConfigMap the topic Job reads.
  const partitions = new Map();
  check("the topic Job creates every configured topic", (p) => {
    const jobs = byKind("Job").filter((j) =>
      (j.spec.template.spec.containers ?? []).some((c) =>
        [...(c.command ?? []), ...(c.args ?? [])].join(" ").includes("kafka-topics.sh"),
      ),
    );
    if (jobs.length !== 1) {
      p.push(`${jobs.length} Jobs run kafka-topics.sh, one expected`);
      return;
    }
    const ps = jobs[0].spec.template.spec;
    for (const v of ps.volumes ?? []) {
      const text = v.configMap && configMaps.get(v.configMap.name)?.data?.topics;
      if (text === undefined) continue;
      for (const line of text.split("\n")) {
        const t = line.trim();
        if (!t || t.startsWith("#")) continue;
        const m = /^(\S+)\s+(\d+)$/.exec(t);
        if (!m || Number(m[2]) < 1) p.push(`topics: bad line "${t}"`);
        else partitions.set(m[1], Number(m[2]));
      }
    }
    if (partitions.size === 0) p.push(`${id(jobs[0])} mounts no ConfigMap with a topics list`);
    const wanted = new Set(stages().flatMap((s) => Object.values(stage[s].topics)));
    for (const t of wanted)
      if (!partitions.has(t)) p.push(`topic ${t} is configured but not created by ${id(jobs[0])}`);
  });

  check("KEDA: a ScaledObject per consumer stage, on its own group, topics, brokers and partitions", (p) => {
    const scaled = byKind("ScaledObject");
    for (const s of stages()) {
      const topicsRead = facts.consumers[s];
      const so = scaled.filter((x) => x.spec?.scaleTargetRef?.name === `pl-${s}`);
      if (!topicsRead) {
        if (so.length) p.push(`pl-${s} consumes no topic but has a ScaledObject`);
        continue;
      }
      if (so.length !== 1) {
        p.push(`pl-${s}: ${so.length} ScaledObjects, one expected`);
        continue;
      }
      const o = so[0].spec;
      const w = id(so[0]);
      if ((o.scaleTargetRef.kind ?? "Deployment") !== "Deployment")
        p.push(`${w}: does not scale the Deployment`);
      if (stage[s].deployment.spec.replicas !== undefined)
        p.push(`pl-${s}: spec.replicas is set though KEDA owns it`);
      const max = o.maxReplicaCount ?? 100;
      if ((o.minReplicaCount ?? 0) > max) p.push(`${w}: minReplicaCount above maxReplicaCount`);
      const covered = new Set();
      for (const t of o.triggers ?? []) {
        const m = t.metadata ?? {};
        if (t.type !== "kafka") {
          p.push(`${w}: a ${t.type} trigger, kafka expected`);
          continue;
        }
        if (m.consumerGroup !== stage[s].group)
          p.push(
            `${w}: consumerGroup ${m.consumerGroup} is not the stage's kafka.group_id ${stage[s].group}`,
          );
        if (m.bootstrapServers !== stage[s].brokers)
          p.push(
            `${w}: bootstrapServers ${m.bootstrapServers} are not the brokers pl-${s} uses (${stage[s].brokers})`,
          );
        const own = topicsRead.map((k) => stage[s].topics[k]);
        if (!own.includes(m.topic))
          p.push(`${w}: topic ${m.topic} is not one pl-${s} reads (${own.join(", ")})`);
        covered.add(m.topic);
        if (!/^[1-9]\d*$/.test(m.lagThreshold ?? "")) p.push(`${w}: lagThreshold must be a positive integer`);
        if (!/^\d+$/.test(m.activationLagThreshold ?? "")) p.push(`${w}: activationLagThreshold must be set`);
        if (m.offsetResetPolicy && m.offsetResetPolicy !== facts.offsetReset)
          p.push(`${w}: offsetResetPolicy ${m.offsetResetPolicy}, the consumer uses ${facts.offsetReset}`);
        const n = partitions.get(m.topic);
        if (n === undefined) p.push(`${w}: topic ${m.topic} has no partition count (topic Job)`);
        else if (!(max <= n))
          p.push(`${w}: maxReplicaCount ${max} exceeds the ${n} partitions of ${m.topic}`);
      }
      for (const k of topicsRead)
        if (!covered.has(stage[s].topics[k]))
          p.push(`${w}: no trigger for ${stage[s].topics[k]}, which pl-${s} reads`);
    }
  });

  check("the stages without a topic scale on CPU (HorizontalPodAutoscaler)", (p) => {
    const hpas = byKind("HorizontalPodAutoscaler");
    for (const s of stages()) {
      const h = hpas.filter(
        (x) => x.spec?.scaleTargetRef?.kind === "Deployment" && x.spec.scaleTargetRef.name === `pl-${s}`,
      );
      if (facts.consumers[s]) {
        if (h.length) p.push(`pl-${s}: an HPA besides its ScaledObject`);
        continue;
      }
      if (h.length !== 1) p.push(`pl-${s}: ${h.length} HorizontalPodAutoscalers, one expected`);
      else if (!(h[0].spec.metrics ?? []).some((m) => m.type === "Resource" && m.resource?.name === "cpu"))
        p.push(`${id(h[0])}: not on CPU`);
      if (stage[s].deployment.spec.replicas !== undefined)
        p.push(`pl-${s}: spec.replicas is set though the HPA owns it`);
      for (const c of stage[s].podSpec.containers)
        if (!c.resources?.requests?.cpu) p.push(`pl-${s}: CPU scaling needs CPU requests`);
    }
  });

  check("a Service and a PodDisruptionBudget per stage", (p) => {
    for (const s of stages()) {
      const labels = stage[s].deployment.spec.template.metadata.labels;
      const svc = byKind("Service").find((x) => selects(x.spec?.selector, labels));
      if (!svc) p.push(`pl-${s}: no Service selects its pods`);
      else if (
        !(svc.spec.ports ?? []).some(
          (x) => resolvePort(stage[s].container, x.targetPort ?? x.port) === stage[s].port,
        )
      )
        p.push(`${id(svc)}: no port reaches ${stage[s].port}`);
      if (!byKind("PodDisruptionBudget").some((x) => selects(x.spec?.selector?.matchLabels, labels)))
        p.push(`pl-${s}: no PodDisruptionBudget selects its pods`);
      if (!selects(stage[s].deployment.spec.selector?.matchLabels, labels))
        p.push(`pl-${s}: its selector misses its own pods`);
    }
  });

  check("every stage's /metrics is scraped (ServiceMonitor or prometheus.io annotations)", (p) => {
    for (const s of stages()) {
      const labels = stage[s].deployment.spec.template.metadata.labels;
      const ann = stage[s].deployment.spec.template.metadata.annotations ?? {};
      const svcs = byKind("Service").filter((x) => selects(x.spec?.selector, labels));
      const byMonitor = byKind("ServiceMonitor").some((m) =>
        svcs.some(
          (svc) =>
            selects(m.spec?.selector?.matchLabels, svc.metadata.labels ?? {}) &&
            (m.spec.endpoints ?? []).some(
              (e) =>
                (e.path ?? "/metrics") === "/metrics" &&
                (svc.spec.ports ?? []).some((sp) => sp.name === e.port),
            ),
        ),
      );
      const byAnnotation =
        ann["prometheus.io/scrape"] === "true" &&
        Number(ann["prometheus.io/port"]) === stage[s].port &&
        (ann["prometheus.io/path"] ?? "/metrics") === "/metrics";
      if (!byMonitor && !byAnnotation) p.push(`pl-${s}: nothing scrapes /metrics on port ${stage[s].port}`);
    }
  });

  check("NetworkPolicies cover every pod and let the API be reached", (p) => {
    const nps = byKind("NetworkPolicy");
    for (const o of podObjects) {
      const labels = o.spec.template.metadata?.labels ?? {};
      if (!nps.some((n) => selects(n.spec?.podSelector?.matchLabels, labels)))
        p.push(`${id(o)}: no NetworkPolicy selects its pods`);
    }
    if (stage.api) {
      const labels = stage.api.deployment.spec.template.metadata.labels;
      const open = nps.some(
        (n) =>
          selects(n.spec?.podSelector?.matchLabels, labels) &&
          (n.spec.ingress ?? []).some((r) =>
            (r.ports ?? []).some((x) => resolvePort(stage.api.container, x.port) === stage.api.port),
          ),
      );
      if (!open) p.push(`no NetworkPolicy admits the API on port ${stage.api.port}`);
    }
  });

  check("images: one promptloop image, pinned by tag or digest", (p) => {
    const images = new Set();
    for (const o of podObjects)
      for (const c of containersOf(podSpecOf(o))) {
        if (!c.image || !/(:[\w][\w.-]*|@sha256:[0-9a-f]{64})$/.test(c.image.replace(/^[^/]*:\d+\//, "")))
          p.push(`${id(o)} container ${c.name}: image ${c.image} has no tag or digest`);
        else if (/:latest$/.test(c.image)) p.push(`${id(o)} container ${c.name}: image ${c.image} floats`);
        if ((c.command ?? [])[0]?.startsWith("pl-")) images.add(c.image);
      }
    if (images.size !== 1) p.push(`the pl-* containers use ${images.size} images: ${[...images].join(", ")}`);
  });

  return results;
}

// ---- driver ----------------------------------------------------------------------------------

// deploy/Dockerfile (beside the manifests): built in one stage, run from another that holds
// only runtime libraries, as a numeric non-root user (which the manifests' runAsUser must be).
function checkDockerfile(file, facts) {
  const problems = [];
  const text = fs.existsSync(file) ? fs.readFileSync(file, "utf8").replace(/\\\n/g, " ") : "";
  const stages = text.split(/^FROM\s+/m).slice(1);
  if (stages.length < 2) problems.push("deploy/Dockerfile is not multi-stage");
  const last = stages[stages.length - 1] ?? "";
  const user = /^USER\s+(\d+)(?::(\d+))?\s*$/m.exec(last);
  if (!user || Number(user[1]) === 0)
    problems.push("deploy/Dockerfile: the final stage has no numeric non-root USER");
  else facts.imageUser = Number(user[1]);
  for (const m of last.matchAll(/apt-get install([^&;]*)/g))
    for (const pkg of m[1].split(/\s+/).filter((w) => w && !w.startsWith("-")))
      if (/-dev$|^(build-essential|cmake|gcc|g\+\+|make|pkg-config|clang)$/.test(pkg))
        problems.push(`deploy/Dockerfile: the runtime stage installs ${pkg}`);
  // every executable of services/ and tools/ is built into the image
  const built = /--target((?:\s+pl-[\w-]+)+)/.exec(text)?.[1].trim().split(/\s+/) ?? [];
  for (const dir of ["services", "tools"])
    for (const m of read(`${dir}/CMakeLists.txt`).matchAll(/add_executable\((pl-[\w-]+)\b/g))
      if (!built.includes(m[1]))
        problems.push(`deploy/Dockerfile does not build ${m[1]} (${dir}/CMakeLists.txt)`);
  if (!/COPY\s+--from=/.test(last))
    problems.push("deploy/Dockerfile: the runtime stage copies nothing from the build stage");
  return { label: "deploy/Dockerfile: multi-stage, runtime libraries only, a non-root user", problems };
}

async function validateTree(manifests, overlays, facts, log) {
  const dir = path.join(manifests, "overlays");
  const names = overlays.length
    ? overlays
    : fs
        .readdirSync(dir)
        .filter((n) => fs.statSync(path.join(dir, n)).isDirectory())
        .sort();
  const results = [checkDockerfile(path.join(manifests, "..", "Dockerfile"), facts)];
  const copy = path.join(manifests, "base", "promptloop.cfg");
  results.push({
    label: "base/promptloop.cfg is config/promptloop.cfg",
    problems:
      fs.existsSync(copy) && fs.readFileSync(copy, "utf8") === facts.config
        ? []
        : [
            "deploy/kubernetes/base/promptloop.cfg differs from config/promptloop.cfg: cp config/promptloop.cfg deploy/kubernetes/base/promptloop.cfg",
          ],
  });
  for (const want of ["dev", "production"])
    if (!overlays.length && !names.includes(want))
      results.push({ label: `overlay ${want} exists`, problems: [`overlays/${want} is missing`] });
  for (const name of names) {
    let objs;
    try {
      objs = render(path.join(dir, name));
    } catch (e) {
      results.push({ label: `${name}: renders`, problems: [String(e.stderr || e.message).trim()] });
      continue;
    }
    results.push({ label: `${name}: renders (${objs.length} objects)`, problems: [] });
    results.push(...(await checkOverlay(name, objs, facts)));
  }
  if (log)
    for (const r of results) {
      console.log(`${r.problems.length ? "not ok" : "ok"} - ${r.label}`);
      for (const x of r.problems) console.log(`    ${x}`);
    }
  return results;
}

// Each mutation breaks one invariant in a copy of deploy/kubernetes: the checks must notice.
const MUTATIONS = [
  {
    what: "a ScaledObject on another consumer group",
    file: "base/stages/detector.yaml",
    from: "consumerGroup: pl-detector",
    to: "consumerGroup: pl-detectors",
    expect: /consumerGroup pl-detectors is not/,
  },
  {
    what: "the group changed by the environment, not in KEDA",
    file: "overlays/production/kustomization.yaml",
    from: "      - PL_UI_COOKIE_SECURE=true",
    to: "      - PL_UI_COOKIE_SECURE=true\n      - PL_KAFKA_GROUP_ID=pl-shared",
    expect: /consumerGroup pl-\w+ is not the stage's kafka.group_id pl-shared/,
  },
  {
    what: "more replicas than partitions",
    file: "base/stages/detector.yaml",
    from: "maxReplicaCount: 8",
    to: "maxReplicaCount: 9",
    expect: /maxReplicaCount 9 exceeds the 8 partitions/,
  },
  {
    what: "a topic the Job does not create",
    file: "base/topics",
    from: "pl.failures 4\n",
    to: "",
    expect: /topic pl.failures is configured but not created/,
  },
  {
    what: "liveness on /readyz",
    file: "base/stages/differ.yaml",
    from: "livenessProbe:\n            httpGet:\n              path: /healthz",
    to: "livenessProbe:\n            httpGet:\n              path: /readyz",
    expect: /liveness probe must be an HTTP GET of \/healthz/,
  },
  {
    what: "readiness on /healthz",
    file: "base/stages/api.yaml",
    from: "readinessProbe:\n            httpGet:\n              path: /readyz",
    to: "readinessProbe:\n            httpGet:\n              path: /healthz",
    expect: /readiness probe must be an HTTP GET of \/readyz/,
  },
  {
    what: "no startup probe",
    file: "base/stages/monitor.yaml",
    from: "startupProbe:",
    to: "startupProbes:",
    expect: /pl-monitor: no startup probe/,
  },
  {
    what: "a DSN in plain text",
    file: "base/jobs/migrate.yaml",
    from: "- name: PL_PG_DSN\n              valueFrom:\n                secretKeyRef:\n                  name: promptloop-secrets\n                  key: pg-dsn",
    to: "- name: PL_PG_DSN\n              value: postgresql://promptloop:hunter2@db/promptloop",
    expect: /PL_PG_DSN is not from a Secret/,
  },
  {
    what: "a rendered Secret",
    file: "overlays/production/kustomization.yaml",
    from: "\npatches:\n",
    to: "\nsecretGenerator:\n  - name: promptloop-secrets\n    literals:\n      - audit-key=0123456789abcdef0123456789abcdef\npatches:\n",
    expect: /Secret\/promptloop-secrets-\w+ is rendered/,
  },
  {
    what: "a missing stage",
    file: "base/kustomization.yaml",
    from: "  - stages/controller.yaml\n",
    to: "",
    expect: /Deployment pl-controller is missing/,
  },
  {
    what: "a writable root filesystem",
    file: "base/stages/abharness.yaml",
    from: 'readOnlyRootFilesystem: true\n            capabilities:\n              drop: ["ALL"]\n      containers:',
    to: 'readOnlyRootFilesystem: false\n            capabilities:\n              drop: ["ALL"]\n      containers:',
    expect: /container migrate: readOnlyRootFilesystem is not true/,
  },
  {
    what: "a schema violation",
    file: "base/stages/differ.yaml",
    from: "containerPort: 9102",
    to: 'containerPort: "9102"',
    expect: /Deployment\/pl-differ \(apps\/v1\) fails its schema/,
  },
  {
    what: "a KEDA schema violation",
    file: "base/stages/controller.yaml",
    from: "pollingInterval: 15",
    to: "pollingInterval: often",
    expect: /ScaledObject\/pl-controller \(keda.sh\/v1alpha1\) fails its schema/,
  },
  {
    what: "a grace period shorter than the shutdown",
    file: "base/stages/detector.yaml",
    from: "terminationGracePeriodSeconds: 60",
    to: "terminationGracePeriodSeconds: 20",
    expect: /pl-detector: terminationGracePeriodSeconds 20 does not exceed/,
  },
  {
    what: "KEDA asking other brokers",
    file: "overlays/production/kustomization.yaml",
    from: "components:\n  - ../../components/kafka-brokers\n",
    to: "",
    expect: /bootstrapServers kafka:9092 are not the brokers/,
  },
  {
    what: "a stale copy of config/promptloop.cfg",
    file: "base/promptloop.cfg",
    from: /$/,
    to: "// drift\n",
    expect: /differs from config\/promptloop.cfg/,
  },
  {
    what: "no migration before a stage",
    file: "base/stages/api.yaml",
    from: 'command: ["pl-admin", "migrate"]',
    to: 'command: ["pl-admin", "help"]',
    expect: /pl-api: no initContainer runs pl-admin migrate/,
  },
  {
    what: "a stage nobody scrapes",
    file: "base/stages/differ.yaml",
    overlay: "dev",
    from: 'prometheus.io/scrape: "true"',
    to: 'prometheus.io/scrape: "false"',
    expect: /pl-differ: nothing scrapes/,
  },
  {
    what: "a Service that misses its pods",
    file: "base/stages/monitor.yaml",
    from: "spec:\n  selector:\n    app.kubernetes.io/name: pl-monitor\n  ports:",
    to: "spec:\n  selector:\n    app.kubernetes.io/name: pl-monitr\n  ports:",
    expect: /pl-monitor: no Service selects its pods/,
  },
  {
    what: "the api scaled on memory",
    file: "base/stages/api.yaml",
    from: "name: cpu",
    to: "name: memory",
    expect: /HorizontalPodAutoscaler\/pl-api: not on CPU/,
  },
  {
    what: "a container without a CPU limit",
    file: "base/stages/detector.yaml",
    from: 'limits:\n              cpu: "1"\n',
    to: "limits:\n",
    expect: /pl-detector container detector: no limits.cpu/,
  },
  {
    what: "an executable left out of the image",
    file: "../Dockerfile",
    from: " pl-llmsim ",
    to: " ",
    expect: /deploy\/Dockerfile does not build pl-llmsim/,
  },
  {
    what: "an image running as root",
    file: "../Dockerfile",
    from: "USER 10001:10001",
    to: "USER root",
    expect: /final stage has no numeric non-root USER/,
  },
  {
    what: "build tools in the runtime image",
    file: "../Dockerfile",
    from: "ca-certificates curl",
    to: "ca-certificates curl libpq-dev",
    expect: /the runtime stage installs libpq-dev/,
  },
  {
    what: "manifests running as another user than the image's",
    file: "../Dockerfile",
    from: "USER 10001:10001",
    to: "USER 10002:10002",
    expect: /runAsUser is not the image's user 10002/,
  },
];

async function selfTest(manifests, facts) {
  const results = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "pl-deploy-selftest-"));
  try {
    // The unmodified copy passes: what each mutation reports is then that mutation's doing.
    fs.cpSync(path.dirname(manifests), path.join(tmp, "deploy"), { recursive: true });
    delete facts.imageUser;
    const clean = (await validateTree(path.join(tmp, "deploy", "kubernetes"), [], facts, false)).flatMap(
      (r) => r.problems,
    );
    results.push({ label: "self-test: the unmodified copy passes", problems: clean });
    for (const m of MUTATIONS) {
      // deploy/ as a whole: the manifests and the Dockerfile beside them
      const copy = path.join(tmp, "deploy", "kubernetes");
      fs.rmSync(path.join(tmp, "deploy"), { recursive: true, force: true });
      fs.cpSync(path.dirname(manifests), path.join(tmp, "deploy"), { recursive: true });
      const file = path.join(copy, m.file);
      const text = fs.readFileSync(file, "utf8");
      const count = typeof m.from === "string" ? text.split(m.from).length - 1 : 1;
      const label = `self-test: ${m.what} is caught`;
      if (count !== 1) {
        results.push({
          label,
          problems: [`the mutation's text occurs ${count} times in ${m.file}: update the self-test`],
        });
        continue;
      }
      fs.writeFileSync(file, text.replace(m.from, m.to));
      const overlay = m.overlay
        ? [m.overlay]
        : m.file.startsWith("overlays/")
          ? [m.file.split("/")[1]]
          : ["production"];
      delete facts.imageUser;
      const problems = (await validateTree(copy, overlay, facts, false)).flatMap((r) => r.problems);
      results.push({
        label,
        problems: problems.some((x) => m.expect.test(x))
          ? []
          : [
              `no check reported ${m.expect} (reported: ${problems.length ? problems.join(" | ") : "nothing"})`,
            ],
      });
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  for (const r of results) {
    console.log(`${r.problems.length ? "not ok" : "ok"} - ${r.label}`);
    for (const x of r.problems) console.log(`    ${x}`);
  }
  return results;
}

async function main() {
  const args = process.argv.slice(2);
  let manifests = path.join(ROOT, "deploy", "kubernetes");
  const overlays = [];
  let self = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--manifests") manifests = path.resolve(args[++i]);
    else if (args[i] === "--overlay") overlays.push(args[++i]);
    else if (args[i] === "--self-test") self = true;
    else {
      console.error("usage: validate.mjs [--manifests DIR] [--overlay NAME]... [--self-test]");
      process.exit(2);
    }
  }
  let results;
  try {
    console.log(`# ${kustomizeVersion()}`);
    const facts = readFacts();
    console.log(`# stages ${facts.stages.join(" ")}; consumers ${Object.keys(facts.consumers).join(" ")}`);
    results = self ? await selfTest(manifests, facts) : await validateTree(manifests, overlays, facts, true);
  } catch (e) {
    console.log(`not ok - setup: ${e.message}`);
    results = [{ label: "setup", problems: [e.message] }];
  }
  const failed = results.filter((r) => r.problems.length).length;
  console.log(`deploy: ${results.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main();
