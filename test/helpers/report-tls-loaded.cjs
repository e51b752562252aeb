// Preloaded with `node -r` by tests: on exit, writes to stderr whether node's TLS modules were loaded.
process.on('exit', () => {
  const loaded = process.moduleLoadList.some((m) => /NativeModule (tls|_tls_wrap)$/.test(m));
  require('node:fs').writeSync(2, `\nTLS_LOADED=${loaded}\n`);
});
