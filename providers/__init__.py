"""Provider adapters. Each depends only on providers.base and providers.catalog."""
