import { groupCpuSeconds, liveMembers, processGroups } from "../../core/session/proc.js";
import type { AgentRecord } from "../../core/session/records.js";

interface AgentCpu {
  /** CPU seconds of process groups the agent no longer runs (earlier runs, restarts). */
  retired: number;
  /** The group being measured: "<pgid>:<start time>", so that a restart starts a new one. */
  group: string | null;
  /** The highest reading of that group so far. */
  current: number;
}

/**
 * CPU time per agent from /proc: utime + stime of every live process of the agent's process
 * group plus what their waited-for children used (the `apex` calls an agent makes count as
 * its own). A group's reading only grows; when the agent is restarted (a new group) the old
 * group's last reading is kept. What a group uses between its last reading and its exit is
 * not seen, so readings are taken on every sample (and when the session pauses).
 */
export class CpuTracker {
  private readonly agents = new Map<string, AgentCpu>();

  /** CPU seconds from earlier runs of the session (its stored metrics), counted as retired. */
  seed(agent: string, seconds: number): void {
    if (Number.isFinite(seconds) && seconds > 0) this.entry(agent).retired += seconds;
  }

  /** Reads /proc once for all agents and returns each agent's CPU seconds so far. */
  read(agents: readonly AgentRecord[]): Map<string, number> {
    const groups = processGroups(agents.map((agent) => agent.pgid ?? 0));
    const out = new Map<string, number>();
    for (const agent of agents) {
      const entry = this.entry(agent.name);
      if (agent.pgid && agent.start_time !== null) {
        const group = `${agent.pgid}:${agent.start_time}`;
        if (group !== entry.group) {
          entry.retired += entry.current;
          entry.group = group;
          entry.current = 0;
        }
        const members = liveMembers(groups.get(agent.pgid) ?? []);
        const leader = members.find((member) => member.pid === agent.pgid);
        // A leader with another start time: the pgid was recycled for someone else's group.
        const own = leader && leader.startTime !== agent.start_time ? [] : members.filter((member) => member.startTime >= agent.start_time!);
        if (own.length > 0) entry.current = Math.max(entry.current, groupCpuSeconds(own));
      }
      out.set(agent.name, entry.retired + entry.current);
    }
    return out;
  }

  private entry(agent: string): AgentCpu {
    let entry = this.agents.get(agent);
    if (!entry) {
      entry = { retired: 0, group: null, current: 0 };
      this.agents.set(agent, entry);
    }
    return entry;
  }
}
