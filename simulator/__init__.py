"""Provider simulator: local HTTP servers that speak the Aliyun, Tencent and WeChat APIs (see its package)."""
