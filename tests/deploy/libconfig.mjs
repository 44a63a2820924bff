// A reader for the libconfig syntax of config/promptloop.cfg: groups, scalars, arrays and
// lists, the three comment styles, adjacent strings joined. Enough to know what a service
// reads from the file a ConfigMap mounts; it returns { section: { key: value } }.

export function parseLibconfig(text) {
  const tokens = tokenize(text);
  let i = 0;
  const peek = () => tokens[i];
  const take = (type) => {
    const t = tokens[i];
    if (!t || (type && t.type !== type))
      throw new Error(`libconfig: expected ${type} at line ${t ? t.line : "EOF"}`);
    i++;
    return t;
  };
  function settings(end) {
    const out = {};
    while (peek() && peek().type !== end) {
      const name = take("name").value;
      const sep = take();
      if (sep.type !== "=" && sep.type !== ":")
        throw new Error(`libconfig: expected = or : after ${name} at line ${sep.line}`);
      out[name] = value();
      if (peek() && (peek().type === ";" || peek().type === ",")) i++;
    }
    return out;
  }
  function value() {
    const t = take();
    switch (t.type) {
      case "string": {
        let s = t.value;
        while (peek() && peek().type === "string") s += take().value;
        return s;
      }
      case "number":
      case "bool":
        return t.value;
      case "{": {
        const g = settings("}");
        take("}");
        return g;
      }
      case "[":
      case "(": {
        const close = t.type === "[" ? "]" : ")";
        const items = [];
        while (peek() && peek().type !== close) {
          items.push(value());
          if (peek() && peek().type === ",") i++;
        }
        take(close);
        return items;
      }
      default:
        throw new Error(`libconfig: unexpected ${t.type} at line ${t.line}`);
    }
  }
  const root = settings(undefined);
  if (i !== tokens.length) throw new Error("libconfig: trailing input");
  return root;
}

function tokenize(text) {
  const tokens = [];
  let line = 1;
  for (let p = 0; p < text.length; ) {
    const c = text[p];
    if (c === "\n") {
      line++;
      p++;
    } else if (/\s/.test(c)) {
      p++;
    } else if (c === "#" || text.startsWith("//", p)) {
      while (p < text.length && text[p] !== "\n") p++;
    } else if (text.startsWith("/*", p)) {
      const end = text.indexOf("*/", p + 2);
      if (end < 0) throw new Error(`libconfig: unterminated comment at line ${line}`);
      line += (text.slice(p, end).match(/\n/g) || []).length;
      p = end + 2;
    } else if (c === '"') {
      let s = "";
      p++;
      while (p < text.length && text[p] !== '"') {
        if (text[p] === "\\") {
          const e = text[++p];
          s += { n: "\n", t: "\t", r: "\r", f: "\f", "\\": "\\", '"': '"' }[e] ?? e;
        } else {
          s += text[p];
        }
        p++;
      }
      if (p >= text.length) throw new Error(`libconfig: unterminated string at line ${line}`);
      p++;
      tokens.push({ type: "string", value: s, line });
    } else if ("{}[]()=:;,".includes(c)) {
      tokens.push({ type: c, line });
      p++;
    } else {
      const m =
        /^[A-Za-z*][-A-Za-z0-9_*]*|^[-+]?(0[xX][0-9A-Fa-f]+|[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?)L{0,2}/.exec(
          text.slice(p),
        );
      if (!m) throw new Error(`libconfig: unexpected '${c}' at line ${line}`);
      const word = m[0];
      if (/^(true|false)$/i.test(word)) tokens.push({ type: "bool", value: /^true$/i.test(word), line });
      else if (/^[A-Za-z*]/.test(word)) tokens.push({ type: "name", value: word, line });
      else tokens.push({ type: "number", value: Number(word.replace(/L+$/, "")), line });
      p += word.length;
    }
  }
  return tokens;
}
