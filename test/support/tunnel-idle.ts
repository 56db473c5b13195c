/**
 * A region's TunnelDO accounting with nothing in flight (`/__tunnel/stats`): every request gave
 * back its pending entry, its queued bytes and its budget share. Pure, so workers tests use it too.
 */
export const TUNNEL_IDLE = {
  pending: 0,
  inflightConnections: 0,
  cancelKeys: 0,
  reservedBytes: 0,
  bufferedBytes: 0,
  draining: 0,
} as const;
