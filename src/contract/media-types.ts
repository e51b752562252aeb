/** The only stdin media type containerd's bindir verifier protocol defines. */
export const OCI_DESCRIPTOR = 'application/vnd.oci.descriptor.v1+json';

export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';

/** What containerd can resolve a reference to: the top-level object it hands the verifier. */
export const PULLABLE_MEDIA_TYPES = [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST] as const;
