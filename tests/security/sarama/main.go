// Command sarama-security: sarama 1.22 (Debian's golang-github-shopify-sarama-dev) over a secured
// listener.
//
// Usage: run.sh BOOTSTRAP TOPIC GROUP [KEY=VALUE...]   (keys: ../README.md; built offline)
//
// Mechanisms: PLAIN, and SCRAM-SHA-256/512 through Net.SASL.SCRAMClientGeneratorFunc with the
// RFC 5802 client below (sarama ships none; Go's standard library has everything it needs), over
// SASL_PLAINTEXT or SASL_SSL; SSL with or without a client certificate (Go's crypto/tls, which
// checks the host name). Config.Version is V2_1_0_0: SaslHandshake v1, then SaslAuthenticate v0.
// Checks (exit status 1 and a FAIL line on any failure):
//   - ClusterAdmin.CreateTopic creates TOPIC (3 partitions) and DescribeTopics shows it;
//   - a SyncProducer (WaitForAll) gets all 30 records acknowledged;
//   - a ConsumerGroup member of GROUP (OffsetOldest) reads exactly those 30 records and marks
//     them; after Close, ListConsumerGroupOffsets shows offsets adding up to 30.
//
// Prints one `RESULT {json}` line.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io/ioutil"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

const (
	partitions  = 3
	records     = 30
	keys        = 5
	stepTimeout = 45 * time.Second
)

var (
	mu       sync.Mutex
	failures []string
)

func fail(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	fmt.Println("sarama: FAIL: " + msg)
	mu.Lock()
	failures = append(failures, msg)
	mu.Unlock()
}

// ---- SCRAM (RFC 5802) ---------------------------------------------------------------------

type scramClient struct {
	newHash         func() hash.Hash
	user, password  string
	authzID         string
	nonce           string
	gs2Header       string
	clientFirstBare string
	serverSignature []byte
	step            int
	done            bool
}

func saslName(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

func (c *scramClient) hmac(key []byte, msg string) []byte {
	m := hmac.New(c.newHash, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// hi is PBKDF2 with HMAC for one output block, which is what SCRAM's Hi() is.
func (c *scramClient) hi(salt []byte, iterations int) []byte {
	m := hmac.New(c.newHash, []byte(c.password))
	m.Write(salt)
	m.Write([]byte{0, 0, 0, 1})
	u := m.Sum(nil)
	out := append([]byte(nil), u...)
	for i := 1; i < iterations; i++ {
		m.Reset()
		m.Write(u)
		u = m.Sum(nil)
		for j := range out {
			out[j] ^= u[j]
		}
	}
	return out
}

func (c *scramClient) Begin(user, password, authzID string) error {
	nonce := make([]byte, 18)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	c.user, c.password, c.authzID = user, password, authzID
	c.nonce = base64.RawStdEncoding.EncodeToString(nonce)
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) {
	c.step++
	switch c.step {
	case 1:
		c.gs2Header = "n,,"
		if c.authzID != "" {
			c.gs2Header = "n,a=" + saslName(c.authzID) + ","
		}
		c.clientFirstBare = "n=" + saslName(c.user) + ",r=" + c.nonce
		return c.gs2Header + c.clientFirstBare, nil
	case 2:
		attrs := map[string]string{}
		for _, part := range strings.Split(challenge, ",") {
			if len(part) > 2 && part[1] == '=' {
				attrs[part[:1]] = part[2:]
			}
		}
		if e, ok := attrs["e"]; ok {
			return "", errors.New("server error: " + e)
		}
		serverNonce, salt64, iter := attrs["r"], attrs["s"], attrs["i"]
		if !strings.HasPrefix(serverNonce, c.nonce) || len(serverNonce) == len(c.nonce) {
			return "", errors.New("server nonce does not extend the client nonce")
		}
		salt, err := base64.StdEncoding.DecodeString(salt64)
		if err != nil {
			return "", fmt.Errorf("salt: %v", err)
		}
		var iterations int
		if _, err := fmt.Sscanf(iter, "%d", &iterations); err != nil || iterations < 1 {
			return "", fmt.Errorf("iteration count %q", iter)
		}
		salted := c.hi(salt, iterations)
		clientKey := c.hmac(salted, "Client Key")
		h := c.newHash()
		h.Write(clientKey)
		storedKey := h.Sum(nil)
		withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte(c.gs2Header)) + ",r=" + serverNonce
		authMessage := c.clientFirstBare + "," + challenge + "," + withoutProof
		proof := c.hmac(storedKey, authMessage)
		for i := range proof {
			proof[i] ^= clientKey[i]
		}
		c.serverSignature = c.hmac(c.hmac(salted, "Server Key"), authMessage)
		return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof), nil
	default:
		c.done = true
		if strings.HasPrefix(challenge, "e=") {
			return "", errors.New("server error: " + challenge[2:])
		}
		if !strings.HasPrefix(challenge, "v=") {
			return "", fmt.Errorf("unexpected server-final message %q", challenge)
		}
		v, err := base64.StdEncoding.DecodeString(challenge[2:])
		if err != nil || !hmac.Equal(v, c.serverSignature) {
			return "", errors.New("the server's signature does not verify")
		}
		return "", nil
	}
}

func (c *scramClient) Done() bool { return c.done }

// ---- configuration ------------------------------------------------------------------------

func config(settings map[string]string) (*sarama.Config, error) {
	c := sarama.NewConfig()
	c.Version = sarama.V2_1_0_0
	c.ClientID = "runnel-security-sarama"
	c.Metadata.Retry.Max = 5
	c.Net.DialTimeout = 10 * time.Second
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.CommitInterval = 100 * time.Millisecond
	c.Consumer.Group.Session.Timeout = 10 * time.Second
	c.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	c.Consumer.MaxWaitTime = 200 * time.Millisecond
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	protocol := strings.ToUpper(settings["security.protocol"])
	switch protocol {
	case "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL":
	default:
		return nil, fmt.Errorf("security.protocol %q", protocol)
	}
	if protocol == "SSL" || protocol == "SASL_SSL" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if ca := settings["ssl.ca.location"]; ca != "" {
			pem, err := ioutil.ReadFile(ca)
			if err != nil {
				return nil, err
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("no certificate in %s", ca)
			}
		}
		if ks := settings["ssl.keystore.location"]; ks != "" {
			if settings["ssl.key.password"] != "" {
				return nil, errors.New("Go's crypto/tls cannot read encrypted PKCS#8 keys")
			}
			pem, err := ioutil.ReadFile(ks)
			if err != nil {
				return nil, err
			}
			// One PEM file with the key and the chain: X509KeyPair picks each block out of it.
			cert, err := tls.X509KeyPair(pem, pem)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", ks, err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		c.Net.TLS.Enable = true
		c.Net.TLS.Config = tc
	}
	if strings.HasPrefix(protocol, "SASL_") {
		c.Net.SASL.Enable = true
		c.Net.SASL.Handshake = true
		c.Net.SASL.User = settings["sasl.username"]
		c.Net.SASL.Password = settings["sasl.password"]
		switch mech := strings.ToUpper(settings["sasl.mechanism"]); mech {
		case "PLAIN":
			c.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		case "SCRAM-SHA-256":
			c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
			c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient {
				return &scramClient{newHash: sha256.New}
			}
		case "SCRAM-SHA-512":
			c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
			c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient {
				return &scramClient{newHash: sha512.New}
			}
		default:
			return nil, fmt.Errorf("sasl.mechanism %q", mech)
		}
	}
	return c, nil
}

// ---- the run ------------------------------------------------------------------------------

type member struct {
	topic string
	mu    sync.Mutex
	got   []string
}

func (m *member) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (m *member) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (m *member) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for msg := range c.Messages() {
		m.mu.Lock()
		m.got = append(m.got, string(msg.Value))
		m.mu.Unlock()
		s.MarkMessage(msg, "")
	}
	return nil
}

func (m *member) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.got)
}

func run(bootstrap, topic, group string, settings map[string]string, result map[string]interface{}) {
	cfg, err := config(settings)
	if err != nil {
		fail("config: %v", err)
		return
	}
	brokers := []string{bootstrap}
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		fail("admin: %v", err)
		return
	}
	defer admin.Close()
	if settings["admin"] == "1" {
		err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false)
		if err != nil {
			fail("CreateTopic: %v", err)
			return
		}
		// DescribeTopics is Metadata; ListTopics would also send DescribeConfigs v0, which
		// Kafka 4 removed (KIP-896) and Runnel does not serve either.
		topics, err := admin.DescribeTopics([]string{topic})
		if err != nil {
			fail("DescribeTopics: %v", err)
		} else if len(topics) != 1 || topics[0].Err != sarama.ErrNoError || len(topics[0].Partitions) != partitions {
			fail("DescribeTopics does not show %s with %d partitions", topic, partitions)
		}
		result["admin"] = "CreateTopic, DescribeTopics"
	}

	producer, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		fail("producer: %v", err)
		return
	}
	produced := map[string]bool{}
	for i := 0; i < records; i++ {
		value := fmt.Sprintf("sarama-%d", i)
		_, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic,
			Key: sarama.StringEncoder(fmt.Sprintf("k%d", i%keys)), Value: sarama.StringEncoder(value)})
		if err != nil {
			fail("send %s: %v", value, err)
		} else {
			produced[value] = true
		}
	}
	producer.Close()
	result["produced"] = len(produced)

	g, err := sarama.NewConsumerGroup(brokers, group, cfg)
	if err != nil {
		fail("NewConsumerGroup: %v", err)
		return
	}
	var groupErrors []string
	go func() {
		for err := range g.Errors() {
			mu.Lock()
			groupErrors = append(groupErrors, err.Error())
			mu.Unlock()
		}
	}()
	m := &member{topic: topic}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, m); err != nil {
				mu.Lock()
				groupErrors = append(groupErrors, "Consume: "+err.Error())
				mu.Unlock()
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	end := time.Now().Add(stepTimeout)
	for m.count() < len(produced) && time.Now().Before(end) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	if err := g.Close(); err != nil {
		fail("close group: %v", err)
	}
	m.mu.Lock()
	got := append([]string(nil), m.got...)
	m.mu.Unlock()
	result["consumed"] = len(got)
	seen := map[string]int{}
	for _, v := range got {
		seen[v]++
		if !produced[v] {
			fail("consumed %q, which was not produced", v)
		}
	}
	for v := range produced {
		if seen[v] != 1 {
			fail("%s consumed %d times", v, seen[v])
		}
	}
	mu.Lock()
	if len(groupErrors) > 0 {
		failures = append(failures, fmt.Sprintf("group errors: %v", groupErrors))
	}
	mu.Unlock()

	parts := []int32{0, 1, 2}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if err != nil {
		fail("ListConsumerGroupOffsets: %v", err)
		return
	}
	var total int64
	for _, p := range parts {
		if blk := resp.GetBlock(topic, p); blk != nil && blk.Err == sarama.ErrNoError && blk.Offset > 0 {
			total += blk.Offset
		}
	}
	if total != int64(len(produced)) {
		fail("committed offsets add up to %d, want %d", total, len(produced))
	}
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: sarama-security BOOTSTRAP TOPIC GROUP [KEY=VALUE...]")
		os.Exit(2)
	}
	bootstrap, topic, group := os.Args[1], os.Args[2], os.Args[3]
	known := map[string]bool{"security.protocol": true, "sasl.mechanism": true, "sasl.username": true,
		"sasl.password": true, "ssl.ca.location": true, "ssl.keystore.location": true,
		"ssl.key.password": true, "admin": true}
	settings := map[string]string{"security.protocol": "PLAINTEXT", "admin": "1"}
	for _, arg := range os.Args[4:] {
		i := strings.Index(arg, "=")
		if i < 0 || !known[arg[:i]] {
			fmt.Fprintf(os.Stderr, "unknown setting %q\n", arg)
			os.Exit(2)
		}
		settings[arg[:i]] = arg[i+1:]
	}
	result := map[string]interface{}{"client": "sarama"}
	run(bootstrap, topic, group, settings, result)
	mu.Lock()
	if failures == nil {
		failures = []string{}
	}
	result["ok"] = len(failures) == 0
	result["failures"] = failures
	out, _ := json.Marshal(result)
	mu.Unlock()
	fmt.Println("RESULT " + string(out))
	if len(failures) > 0 {
		os.Exit(1)
	}
}
