"""The descriptor pool of Tandem's messages, apart from protobuf's default pool
(proto/generate.sh says why); written by proto/generate.sh."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
