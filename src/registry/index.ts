import { PullguardError } from '../common/errors.js';
import type { RegistryClientFactory } from './types.js';

export const createRegistryClient: RegistryClientFactory = () => {
  throw new PullguardError('INTERNAL', 'registry client not built yet');
};
