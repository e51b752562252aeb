import { COMMIT, VERSION } from '../common/build.js';

export function versionLine(): string {
  return `pullguard ${VERSION} (commit ${COMMIT}, node ${process.versions.node})`;
}
