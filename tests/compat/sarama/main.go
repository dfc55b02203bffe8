// Command sarama-roundtrip: sarama 1.22 (Debian's golang-github-shopify-sarama-dev) round trip
// against a Runnel broker.
//
// Usage: go run ./tests/compat/sarama BOOTSTRAP TOPIC   (built offline by run.sh, see there)
//
// Config.Version is V2_1_0_0 (needed for zstd and record headers).
// Checks:
//   - ClusterAdmin.CreateTopic creates TOPIC with 3 partitions; the client's metadata shows 3.
//   - per codec (none, gzip, snappy, lz4, zstd) a SyncProducer with acks=WaitForAll sends 50
//     keyed records (5 keys, hash partitioner) with three headers and an explicit timestamp;
//     every SendMessage returns (partition, offset) without error.
//   - a PartitionConsumer per partition from OffsetOldest returns exactly those records, each at
//     its acknowledged (partition, offset), with equal key, value, headers (order and bytes) and
//     timestamp, within the send window; offsets strictly increase per partition; each key's
//     records arrive in send order; no duplicates, nothing extra.
//
// Prints one summary line per codec; exits non-zero on any mismatch.
package main

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/Shopify/sarama"
)

const (
	perCodec   = 50
	partitions = 3
)

type sentRec struct {
	codec   string
	seq     int
	key     []byte
	value   []byte
	headers []sarama.RecordHeader
	ts      time.Time
}

type pos struct {
	p   int32
	off int64
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "sarama: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func config() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V2_1_0_0
	c.ClientID = "runnel-compat-sarama"
	c.Net.DialTimeout = 10 * time.Second
	c.Net.ReadTimeout = 30 * time.Second
	c.Metadata.Retry.Max = 10
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Retry.Max = 5
	c.Producer.Partitioner = sarama.NewHashPartitioner
	c.Consumer.Return.Errors = true
	return c
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: sarama-roundtrip BOOTSTRAP TOPIC")
	}
	addrs := []string{os.Args[1]}
	topic := os.Args[2]

	admin, err := sarama.NewClusterAdmin(addrs, config())
	if err != nil {
		fail("cluster admin: %v", err)
	}
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false); err != nil {
		fail("create topic: %v", err)
	}
	admin.Close()

	codecs := []struct {
		name string
		c    sarama.CompressionCodec
	}{
		{"none", sarama.CompressionNone},
		{"gzip", sarama.CompressionGZIP},
		{"snappy", sarama.CompressionSnappy},
		{"lz4", sarama.CompressionLZ4},
		{"zstd", sarama.CompressionZSTD},
	}
	sent := map[pos]sentRec{}
	tStart := time.Now()
	for _, codec := range codecs {
		cfg := config()
		cfg.Producer.Compression = codec.c
		producer, err := sarama.NewSyncProducer(addrs, cfg)
		if err != nil {
			fail("%s: producer: %v", codec.name, err)
		}
		for i := 0; i < perCodec; i++ {
			r := sentRec{
				codec: codec.name,
				seq:   i,
				key:   []byte(fmt.Sprintf("key-%d", i%5)),
				value: []byte(fmt.Sprintf("%s-%d-sarama", codec.name, i)),
				headers: []sarama.RecordHeader{
					{Key: []byte("codec"), Value: []byte(codec.name)},
					{Key: []byte("seq"), Value: []byte(fmt.Sprint(i))},
					{Key: []byte("bin"), Value: []byte{0, 255, byte(i)}},
				},
				// Kafka timestamps are milliseconds.
				ts: time.Unix(0, time.Now().UnixNano()/1e6*1e6),
			}
			p, off, err := producer.SendMessage(&sarama.ProducerMessage{
				Topic:     topic,
				Key:       sarama.ByteEncoder(r.key),
				Value:     sarama.ByteEncoder(r.value),
				Headers:   r.headers,
				Timestamp: r.ts,
			})
			if err != nil {
				fail("%s: send %d: %v", codec.name, i, err)
			}
			if _, dup := sent[pos{p, off}]; dup {
				fail("%s: two records acknowledged at %d@%d", codec.name, p, off)
			}
			sent[pos{p, off}] = r
		}
		if err := producer.Close(); err != nil {
			fail("%s: producer close: %v", codec.name, err)
		}
	}
	tEnd := time.Now()

	client, err := sarama.NewClient(addrs, config())
	if err != nil {
		fail("client: %v", err)
	}
	ps, err := client.Partitions(topic)
	if err != nil || len(ps) != partitions {
		fail("partitions: %v %v", ps, err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		fail("consumer: %v", err)
	}
	want := map[int32]int{}
	for k := range sent {
		want[k.p]++
	}
	var got []*sarama.ConsumerMessage
	deadline := time.After(60 * time.Second)
	for p := int32(0); p < partitions; p++ {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			fail("consume partition %d: %v", p, err)
		}
		n := 0
		for n < want[p] {
			select {
			case m := <-pc.Messages():
				got = append(got, m)
				n++
			case e := <-pc.Errors():
				fail("partition %d: %v", p, e)
			case <-deadline:
				fail("partition %d: read %d of %d records within 60s", p, n, want[p])
			}
		}
		// Anything beyond what was acknowledged would arrive here.
		select {
		case m := <-pc.Messages():
			fail("unexpected extra record %d@%d: %q", m.Partition, m.Offset, m.Value)
		case <-time.After(500 * time.Millisecond):
		}
		pc.Close()
	}
	consumer.Close()
	client.Close()

	seen := map[pos]bool{}
	lastOff := map[int32]int64{}
	keyLast := map[string]int{}
	counts := map[string]int{}
	parts := map[string]map[int32]bool{}
	for _, m := range got {
		k := pos{m.Partition, m.Offset}
		if seen[k] {
			fail("%d@%d read twice", k.p, k.off)
		}
		seen[k] = true
		if last, ok := lastOff[m.Partition]; ok && m.Offset <= last {
			fail("partition %d: offset %d after %d", m.Partition, m.Offset, last)
		}
		lastOff[m.Partition] = m.Offset
		s, ok := sent[k]
		if !ok {
			fail("unexpected record at %d@%d: %q", k.p, k.off, m.Value)
		}
		if !bytes.Equal(m.Key, s.key) || !bytes.Equal(m.Value, s.value) {
			fail("%d@%d: got %q=%q, want %q=%q", k.p, k.off, m.Key, m.Value, s.key, s.value)
		}
		if len(m.Headers) != len(s.headers) {
			fail("%d@%d: %d headers, want %d", k.p, k.off, len(m.Headers), len(s.headers))
		}
		for i, h := range m.Headers {
			if !bytes.Equal(h.Key, s.headers[i].Key) || !bytes.Equal(h.Value, s.headers[i].Value) {
				fail("%d@%d: header %d = %q:%q, want %q:%q", k.p, k.off, i, h.Key, h.Value, s.headers[i].Key, s.headers[i].Value)
			}
		}
		if !m.Timestamp.Equal(s.ts) {
			fail("%d@%d: timestamp %v, want %v", k.p, k.off, m.Timestamp, s.ts)
		}
		if m.Timestamp.Before(tStart.Add(-5*time.Second)) || m.Timestamp.After(tEnd.Add(5*time.Second)) {
			fail("%d@%d: timestamp %v outside send window", k.p, k.off, m.Timestamp)
		}
		kk := s.codec + "/" + string(s.key)
		if last, ok := keyLast[kk]; ok && s.seq <= last {
			fail("%s: seq %d after %d", kk, s.seq, last)
		}
		keyLast[kk] = s.seq
		counts[s.codec]++
		if parts[s.codec] == nil {
			parts[s.codec] = map[int32]bool{}
		}
		parts[s.codec][m.Partition] = true
	}
	if len(seen) != len(sent) {
		fail("read %d records, acknowledged %d", len(seen), len(sent))
	}
	for _, codec := range codecs {
		if counts[codec.name] != perCodec {
			fail("%s: read %d records, want %d", codec.name, counts[codec.name], perCodec)
		}
		var ps []int
		for p := range parts[codec.name] {
			ps = append(ps, int(p))
		}
		sort.Ints(ps)
		fmt.Printf("sarama codec=%s: %d records ok (partitions %v)\n", codec.name, perCodec, ps)
	}
}
