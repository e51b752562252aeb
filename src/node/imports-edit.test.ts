import fc from 'fast-check';
import { parse as parseToml } from 'smol-toml';
import { describe, expect, test } from 'vitest';
import { addImport, removeImport } from './imports-edit.js';
import { checkEdit } from './plan.js';

const P = '/etc/containerd/conf.d/pullguard.toml';

/** Adds, checks with the TOML parser that only imports changed, and that removing gives the original back. */
function roundTrip(text: string): string {
  const added = addImport(text, P);
  const before = (parseToml(text) as { imports?: string[] }).imports ?? [];
  checkEdit(text, added, [...before, P]);
  const removed = removeImport(added, P);
  expect(removed).toBeDefined();
  checkEdit(added, removed!, before);
  return added;
}

describe('addImport', () => {
  test('no imports: after the version line, or before the first key or table (no version line)', () => {
    expect(roundTrip('version = 3\n[debug]\n  level = "info"\n')).toBe(
      `version = 3\nimports = ["${P}"]\n[debug]\n  level = "info"\n`,
    );
    expect(roundTrip('# node config\n\n[plugins."io.containerd.grpc.v1.cri"]\n')).toBe(
      `# node config\n\nimports = ["${P}"]\n[plugins."io.containerd.grpc.v1.cri"]\n`,
    );
    expect(roundTrip('version = 2')).toBe(`version = 2\nimports = ["${P}"]\n`);
    expect(roundTrip('')).toBe(`imports = ["${P}"]\n`);
  });

  test('inline arrays: empty, one entry, a trailing comma, literal strings, a comment after', () => {
    expect(roundTrip('version = 3\nimports = []\n')).toBe(`version = 3\nimports = ["${P}"]\n`);
    expect(roundTrip('imports = ["/a.toml"] # mine\n')).toBe(`imports = ["/a.toml", "${P}"] # mine\n`);
    expect(roundTrip("imports = ['/a.toml',]\n")).toBe(`imports = ['/a.toml', "${P}"]\n`);
    expect(roundTrip('"imports" = [ "/a.toml" ]\n')).toBe(`"imports" = [ "/a.toml", "${P}" ]\n`);
  });

  test('multi-line arrays keep their layout: indentation, comments, trailing comma or not', () => {
    const trailing =
      'version = 2\nimports = [\n  "/etc/containerd/a.toml", # first\n  # "/disabled.toml",\n  ' +
      '"/etc/containerd/b.toml",\n]\n[x]\n';
    expect(roundTrip(trailing)).toBe(trailing.replace('b.toml",\n', `b.toml",\n  "${P}",\n`));
    const bare = 'imports = [\n    "/a.toml",\n    "/b.toml"\n]\n';
    expect(roundTrip(bare)).toBe(`imports = [\n    "/a.toml",\n    "/b.toml",\n    "${P}"\n]\n`);
  });

  test('keys before imports with arrays, inline tables and multi-line strings are skipped correctly', () => {
    const text =
      'version = 3\nroot = "/var/lib/containerd"\nrequired_plugins = ["a.b", \n "c.d"]\nx = { a = 1, b = "]" }\ns ' +
      '= """\n[not a table]\n"""\nimports = ["/a.toml"]\n[grpc]\n';
    expect(roundTrip(text)).toContain(`imports = ["/a.toml", "${P}"]`);
  });

  test('refuses what it cannot edit safely', () => {
    expect(() => addImport('imports = "x"\n', P)).toThrow(/imports is not an array/);
    expect(() => addImport('imports = ["a"\n', P)).toThrow(/unterminated/);
    expect(() => addImport('', '/a"b')).toThrow(/quotes/);
  });

  test('property: any config the generator writes round-trips, changing only imports', () => {
    const entry = fc.constantFrom('"/a.toml"', "'/b/*.toml'", '"rel.toml"');
    const arr = fc
      .tuple(fc.array(entry, { maxLength: 3 }), fc.boolean(), fc.boolean(), fc.boolean())
      .map(([es, multi, trailing, comment]) => {
        if (es.length === 0) return multi ? '[\n]' : '[]';
        const sep = multi ? ',\n  ' : ', ';
        return multi
          ? `[\n  ${es.join(sep)}${trailing ? ',' : ''}${comment ? ' # c' : ''}\n]`
          : `[${es.join(sep)}${trailing ? ',' : ''}]${comment ? ' # c' : ''}`;
      });
    const config = fc
      .tuple(fc.boolean(), fc.option(arr), fc.boolean(), fc.boolean())
      .map(([version, imports, root, table]) =>
        [
          version ? 'version = 2' : '',
          root ? 'root = "/r" # x' : '',
          imports !== null ? `imports = ${imports}` : '',
          table ? '[plugins."io.containerd.cri.v1.images"]\n  snapshotter = "a"' : '',
        ]
          .filter(Boolean)
          .join('\n')
          .concat('\n'),
      );
    fc.assert(
      fc.property(config, (text) => void roundTrip(text)),
      { numRuns: 300 },
    );
  });
});

describe('removeImport', () => {
  test('removes the entry only, and nothing when it is not there', () => {
    expect(removeImport(`imports = ["/a.toml", "${P}", "/b.toml"]\n`, P)).toBe('imports = ["/a.toml", "/b.toml"]\n');
    expect(removeImport(`imports = ["${P}", "/b.toml"]\n`, P)).toBe('imports = ["/b.toml"]\n');
    expect(removeImport(`imports = [\n  "/a.toml",\n  "${P}", # pullguard\n]\n`, P)).toBe(
      'imports = [\n  "/a.toml",\n]\n',
    );
    expect(removeImport('imports = ["/a.toml"]\n', P)).toBeUndefined();
  });
});
