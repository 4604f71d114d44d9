"""HTTP plumbing shared by every route: errors, the response envelope, client addresses, rate limits."""
