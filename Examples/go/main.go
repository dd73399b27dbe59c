// A MeshBus consumer in Go that never misses an event: subscribe, take a snapshot, apply
// events whose seq is greater; on a seq jump fetch the missed ones with replay (or snapshot
// again if they are too old); on a new broker id (MeshBus restarted) snapshot again.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
)

type object = map[string]any

type broker struct {
	ctx      *context
	endpoint string
}

// call sends one command on a fresh REQ socket and returns its result.
func (b broker) call(request object) (object, error) {
	s, err := b.ctx.socket(req)
	if err != nil {
		return nil, err
	}
	defer s.close()
	s.setInt(rcvTimeoutOption, 10000)
	s.setInt(lingerOption, 0)
	if err := s.connect(b.endpoint); err != nil {
		return nil, err
	}
	body, _ := json.Marshal(request)
	if err := s.send(body); err != nil {
		return nil, err
	}
	frames, err := s.receive()
	if err != nil {
		return nil, fmt.Errorf("%v: %w", request["cmd"], err)
	}
	var reply object
	if err := json.Unmarshal(frames[len(frames)-1], &reply); err != nil {
		return nil, err
	}
	if ok, _ := reply["ok"].(bool); !ok {
		problem, _ := reply["error"].(object)
		return nil, fmt.Errorf("%v: %v: %v", request["cmd"], problem["code"], problem["message"])
	}
	result, _ := reply["result"].(object)
	return result, nil
}

// slotView is one slot's node DB, current at seq.
type slotView struct {
	name, brokerID string
	seq            int64
	nodes          map[string]any
}

func number(value any) int64 {
	f, _ := value.(float64)
	return int64(f)
}

func (v *slotView) load(snapshot object, brokerID string) {
	v.brokerID, v.seq = brokerID, number(snapshot["seq"])
	v.nodes, _ = snapshot["nodes"].(object)
	fmt.Printf("snapshot %s: %d nodes at seq %d\n", v.name, len(v.nodes), v.seq)
}

func (v *slotView) apply(topic string, envelope object) {
	v.seq = number(envelope["seq"])
	switch {
	case strings.HasPrefix(topic, "meshtastic.node.updated/"):
		node, _ := envelope["node"].(object)
		id := fmt.Sprintf("!%08x", number(node["num"]))
		v.nodes[id] = node
		user, _ := node["user"].(object)
		name, ok := user["longName"].(string)
		if !ok {
			name = "?"
		}
		line := fmt.Sprintf("node %s %s: %s", v.name, id, name)
		if metrics, ok := node["deviceMetrics"].(object); ok && metrics["batteryLevel"] != nil {
			line += fmt.Sprintf(" battery %d%%", number(metrics["batteryLevel"]))
		}
		fmt.Println(line)
	case strings.HasPrefix(topic, "meshtastic.receive/") && strings.HasSuffix(topic, "/TEXT_MESSAGE_APP"):
		packet, _ := envelope["packet"].(object)
		decoded, _ := packet["decoded"].(object)
		fmt.Printf("text %s %v: %v\n", v.name, packet["fromId"], decoded["text"])
	}
}

func main() {
	events := flag.String("events", "tcp://127.0.0.1:7710", "the broker's PUB endpoint")
	commands := flag.String("commands", "tcp://127.0.0.1:7711", "the broker's command endpoint")
	count := flag.Int("count", 0, "stop after this many events (0: run forever)")
	simulateGap := flag.Int("simulate-gap", 0, "throw away every Nth event as if missed, to show the repair")
	flag.Parse()
	if err := run(*events, *commands, *count, *simulateGap); err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

func run(events, commands string, count, simulateGap int) error {
	ctx := newContext()
	b := broker{ctx, commands}
	subscriber, err := ctx.socket(sub)
	if err != nil {
		return err
	}
	if err := subscriber.connect(events); err != nil {
		return err
	}
	subscriber.subscribe("") // everything; "meshtastic.receive/roof" would be one slot's packets

	views := map[string]*slotView{}
	resync := func(name, brokerID string) error {
		snapshot, err := b.call(object{"cmd": "snapshot", "slot": name})
		if err != nil {
			return err
		}
		if views[name] == nil {
			views[name] = &slotView{name: name}
		}
		views[name].load(snapshot, brokerID)
		return nil
	}
	// Subscribed first, then the snapshots: nothing published in between is lost.
	ping, err := b.call(object{"cmd": "ping"})
	if err != nil {
		return err
	}
	status, err := b.call(object{"cmd": "status"})
	if err != nil {
		return err
	}
	slots, _ := status["slots"].(object)
	for name := range slots {
		if err := resync(name, ping["broker"].(string)); err != nil {
			return err
		}
	}

	for received := 0; count == 0 || received < count; {
		frames, err := subscriber.receive()
		if err != nil {
			return err
		}
		received++
		if simulateGap > 0 && received%simulateGap == 0 {
			continue
		}
		topic := string(frames[0])
		var envelope object
		if err := json.Unmarshal(frames[1], &envelope); err != nil {
			return err
		}
		name, _ := envelope["slot"].(string)
		brokerID, _ := envelope["broker"].(string)
		view := views[name]
		if view == nil || view.brokerID != brokerID {
			if view != nil {
				fmt.Printf("broker restarted (%s): snapshot %s again\n", brokerID, name)
			}
			if err := resync(name, brokerID); err != nil {
				return err
			}
			view = views[name]
		}
		seq := number(envelope["seq"])
		if seq <= view.seq {
			continue
		}
		if seq > view.seq+1 {
			fmt.Printf("gap %s: seq %d after %d, replaying %d\n", name, seq, view.seq, seq-view.seq-1)
			err := replayUntil(b, view, seq)
			if err != nil {
				fmt.Printf("replay failed (%v): snapshot %s again\n", err, name)
				if err := resync(name, brokerID); err != nil {
					return err
				}
				if seq <= view.seq {
					continue
				}
			} else {
				fmt.Printf("repaired %s: now at seq %d\n", name, view.seq)
			}
		}
		view.apply(topic, envelope)
	}
	return nil
}

// replayUntil applies the slot's missed events up to seq (exclusive). A reply holds one page
// (up to 1,000 events), so it asks again until the gap is closed.
func replayUntil(b broker, view *slotView, seq int64) error {
	for view.seq < seq-1 {
		replayed, err := b.call(object{"cmd": "replay", "slot": view.name, "sinceSeq": view.seq})
		if err != nil {
			return err
		}
		list, _ := replayed["events"].([]any)
		for _, item := range list {
			event, _ := item.(object)
			old, _ := event["envelope"].(object)
			if s := number(old["seq"]); s > view.seq && s < seq {
				view.apply(event["topic"].(string), old)
			}
		}
		if complete, _ := replayed["complete"].(bool); complete || len(list) == 0 {
			break
		}
	}
	if view.seq < seq-1 {
		return fmt.Errorf("replay ended at seq %d", view.seq)
	}
	return nil
}
