package testutil

import (
	"context"
	"fmt"
	"slices"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// CheckRedisSet returns an error unless the set key holds exactly the
// members want (in any order) and expires within (0, ttl]. For CheckFor.
func CheckRedisSet(ctx context.Context, c *goredis.Client, key string, want []string, ttl time.Duration) error {
	got, err := c.SMembers(ctx, key).Result()
	if err != nil {
		return err
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		return fmt.Errorf("SMEMBERS %q: got %q, want %q", key, got, want)
	}
	d, err := c.TTL(ctx, key).Result()
	if err != nil {
		return err
	}
	if d <= 0 || d > ttl {
		return fmt.Errorf("TTL %q: got %v, want in (0, %v]", key, d, ttl)
	}
	return nil
}
