import type { RegistryClientFactory } from './types.js';
import { DistributionClient } from './client.js';

import { USER_AGENT } from '../common/build.js';

/**
 * The registry stage. Creating a client is free: containerd's config, hosts.toml and docker
 * config.json are read on first use, and failures surface as PullguardErrors from discover/resolve.
 */
export const createRegistryClient: RegistryClientFactory = (settings) =>
  new DistributionClient(settings, { userAgent: USER_AGENT });
