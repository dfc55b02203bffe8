// Command sarama-group: sarama 1.22 (Debian's golang-github-shopify-sarama-dev) consumer group
// against a Runnel broker.
//
// Usage: run.sh BOOTSTRAP TOPIC GROUP [RETENTION_MS]   (built offline, see run.sh)
//
// Config.Version is V2_1_0_0. sarama 1.22 sends JoinGroup v1, SyncGroup v0, Heartbeat v0,
// LeaveGroup v0, OffsetFetch v1 and OffsetCommit v1, or v2 when Consumer.Offsets.Retention is
// set (RETENTION_MS > 0).
// Run by crates/cli/tests/t71_group_clients.rs, which creates TOPIC with 4 partitions.
// Two sarama.ConsumerGroup members (range strategy, OffsetOldest, commit interval 100 ms) join
// GROUP; once both are in a session whose claims are non-empty, disjoint and cover all four
// partitions, 100 records per partition are produced; each member marks what it consumes; once
// everything is consumed both close (Close commits the marked offsets and leaves).
// Checks (exit status 1 and a FAIL line on any failure):
//   - claims: both non-empty, disjoint, all four partitions, the same generation;
//   - no new session (rebalance) while consuming;
//   - every record consumed exactly once, by the member that claimed its partition;
//   - the group's committed offsets (ClusterAdmin.ListConsumerGroupOffsets, OffsetFetch v1)
//     are 100 on every partition afterwards;
//   - no error from the group's Errors() channel.
// Prints one `RESULT {json}` line.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

const (
	partitions   = 4
	perPartition = 100
	stepTimeout  = 45 * time.Second
)

var (
	mu       sync.Mutex
	failures []string
)

func fail(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	fmt.Println("sarama-group: FAIL: " + msg)
	mu.Lock()
	failures = append(failures, msg)
	mu.Unlock()
}

type member struct {
	name       string
	sessions   int
	generation int32
	claims     []int32
	got        [][2]int64
	errors     []string
}

func (m *member) Setup(s sarama.ConsumerGroupSession) error {
	mu.Lock()
	defer mu.Unlock()
	m.sessions++
	m.generation = s.GenerationID()
	m.claims = append([]int32(nil), s.Claims()[topicName]...)
	sort.Slice(m.claims, func(i, j int) bool { return m.claims[i] < m.claims[j] })
	return nil
}

func (m *member) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (m *member) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for msg := range c.Messages() {
		mu.Lock()
		m.got = append(m.got, [2]int64{int64(msg.Partition), msg.Offset})
		mu.Unlock()
		s.MarkMessage(msg, "")
	}
	return nil
}

var topicName string

func config(retentionMs int) *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V2_1_0_0
	c.ClientID = "runnel-group-sarama"
	c.Metadata.Retry.Max = 10
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.CommitInterval = 100 * time.Millisecond
	c.Consumer.Offsets.Retention = time.Duration(retentionMs) * time.Millisecond
	c.Consumer.Group.Session.Timeout = 6 * time.Second
	c.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	c.Consumer.Group.Rebalance.Strategy = sarama.BalanceStrategyRange
	c.Consumer.MaxWaitTime = 200 * time.Millisecond
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Partitioner = sarama.NewManualPartitioner
	return c
}

func waitFor(what string, cond func() bool) bool {
	end := time.Now().Add(stepTimeout)
	for time.Now().Before(end) {
		mu.Lock()
		ok := cond()
		mu.Unlock()
		if ok {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	fail("timed out waiting for %s", what)
	return false
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: sarama-group BOOTSTRAP TOPIC GROUP [RETENTION_MS]")
		os.Exit(2)
	}
	bootstrap, group := os.Args[1], os.Args[3]
	topicName = os.Args[2]
	retention := 0
	if len(os.Args) > 4 {
		retention, _ = strconv.Atoi(os.Args[4])
	}
	cfg := config(retention)
	ctx, cancel := context.WithCancel(context.Background())
	members := []*member{{name: "a"}, {name: "b"}}
	groups := make([]sarama.ConsumerGroup, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		g, err := sarama.NewConsumerGroup([]string{bootstrap}, group, cfg)
		if err != nil {
			fail("NewConsumerGroup: %v", err)
			break
		}
		groups[i] = g
		m := m
		go func() {
			for err := range g.Errors() {
				mu.Lock()
				m.errors = append(m.errors, err.Error())
				mu.Unlock()
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := g.Consume(ctx, []string{topicName}, m); err != nil {
					mu.Lock()
					m.errors = append(m.errors, "Consume: "+err.Error())
					mu.Unlock()
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	a, b := members[0], members[1]
	result := map[string]interface{}{}
	ok := len(failures) == 0 && waitFor("two members with disjoint claims", func() bool {
		seen := map[int32]bool{}
		for _, p := range append(append([]int32{}, a.claims...), b.claims...) {
			seen[p] = true
		}
		return len(a.claims) > 0 && len(b.claims) > 0 && len(a.claims)+len(b.claims) == partitions &&
			len(seen) == partitions && a.generation == b.generation
	})
	mu.Lock()
	sessionsAt := [2]int{a.sessions, b.sessions}
	result["claims"] = map[string][]int32{"a": a.claims, "b": b.claims}
	result["generation"] = a.generation
	mu.Unlock()
	if ok {
		client, err := sarama.NewClient([]string{bootstrap}, cfg)
		if err != nil {
			fail("client: %v", err)
		} else {
			prod, err := sarama.NewSyncProducerFromClient(client)
			if err != nil {
				fail("producer: %v", err)
			} else {
				var msgs []*sarama.ProducerMessage
				for p := 0; p < partitions; p++ {
					for i := 0; i < perPartition; i++ {
						msgs = append(msgs, &sarama.ProducerMessage{Topic: topicName, Partition: int32(p),
							Value: sarama.StringEncoder(fmt.Sprintf("p%d-%d", p, i))})
					}
				}
				if err := prod.SendMessages(msgs); err != nil {
					fail("produce: %v", err)
				}
				prod.Close()
			}
			client.Close()
		}
		waitFor("all records consumed", func() bool { return len(a.got)+len(b.got) >= partitions*perPartition })
	}
	cancel()
	for _, g := range groups {
		if g != nil {
			if err := g.Close(); err != nil {
				fail("close: %v", err)
			}
		}
	}
	wg.Wait()
	mu.Lock()
	if a.sessions != sessionsAt[0] || b.sessions != sessionsAt[1] {
		failures = append(failures, fmt.Sprintf("rebalanced while consuming: sessions %d,%d -> %d,%d",
			sessionsAt[0], sessionsAt[1], a.sessions, b.sessions))
	}
	seen := map[[2]int64]int{}
	for _, m := range members {
		owned := map[int64]bool{}
		for _, p := range m.claims {
			owned[int64(p)] = true
		}
		for _, r := range m.got {
			seen[r]++
			if !owned[r[0]] {
				failures = append(failures, fmt.Sprintf("%s consumed %d@%d outside its claims", m.name, r[0], r[1]))
			}
		}
		if len(m.errors) > 0 {
			failures = append(failures, fmt.Sprintf("%s errors: %v", m.name, m.errors))
		}
	}
	for p := int64(0); p < partitions; p++ {
		for o := int64(0); o < perPartition; o++ {
			if n := seen[[2]int64{p, o}]; n != 1 {
				failures = append(failures, fmt.Sprintf("record %d@%d consumed %d times", p, o, n))
			}
		}
	}
	result["consumed"] = len(a.got) + len(b.got)
	mu.Unlock()

	admin, err := sarama.NewClusterAdmin([]string{bootstrap}, cfg)
	if err != nil {
		fail("admin: %v", err)
	} else {
		parts := []int32{0, 1, 2, 3}
		resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topicName: parts})
		if err != nil {
			fail("ListConsumerGroupOffsets: %v", err)
		} else {
			committed := map[int32]int64{}
			for _, p := range parts {
				blk := resp.GetBlock(topicName, p)
				if blk == nil || blk.Err != sarama.ErrNoError {
					fail("offset fetch %d: %v", p, blk)
					continue
				}
				committed[p] = blk.Offset
				if blk.Offset != perPartition {
					fail("committed offset of partition %d is %d, want %d", p, blk.Offset, perPartition)
				}
			}
			result["committed"] = committed
		}
		admin.Close()
	}
	mu.Lock()
	result["ok"] = len(failures) == 0
	result["failures"] = failures
	out, _ := json.Marshal(result)
	mu.Unlock()
	fmt.Println("RESULT " + string(out))
	if len(failures) > 0 {
		os.Exit(1)
	}
}
