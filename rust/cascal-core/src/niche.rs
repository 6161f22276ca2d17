//! niche kernels (to be written).
