// kafka-local's helper for the secured broker (kafka-local --secure): creates a SCRAM principal
// that may use one or more topic prefixes and nothing else, and lists the ACLs. Compiled by
// kafka-local against the broker's own jars (kafka-clients' Admin API); the JDK's javac is needed.
//
//   java SecureAdmin <admin.properties> principal <name> <prefix>...   password in $SECURE_ADMIN_PASSWORD
//   java SecureAdmin <admin.properties> acls [<name>]
//
// A prefix P gets PREFIXED ACLs on the resource names "P." and "P-" (Aion's topics and group ids
// are "P.<what>", the engine's Faust app is "P-engine": its consumer group, its changelog and
// assignor topics "P-engine-...", and its transactional ids "P-engine-p<N>"; aion bench nests
// its deployments under "P.bench-..."):
//   TOPIC            P. and P-   CREATE, DESCRIBE, DESCRIBE_CONFIGS, READ, WRITE, DELETE
//   GROUP            P. and P-   READ, DESCRIBE
//   TRANSACTIONAL_ID P. and P-   WRITE, DESCRIBE
// Nothing on the cluster resource: idempotent producers need WRITE on a topic only (KIP-679).

import java.io.FileInputStream;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;

public class SecureAdmin {
    static final AclOperation[] TOPIC_OPS = {AclOperation.CREATE, AclOperation.DESCRIBE,
        AclOperation.DESCRIBE_CONFIGS, AclOperation.READ, AclOperation.WRITE, AclOperation.DELETE};
    static final AclOperation[] GROUP_OPS = {AclOperation.READ, AclOperation.DESCRIBE};
    static final AclOperation[] TXN_OPS = {AclOperation.WRITE, AclOperation.DESCRIBE};

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            usage();
        }
        Properties props = new Properties();
        try (FileInputStream in = new FileInputStream(args[0])) {
            props.load(in);
        }
        props.putIfAbsent("request.timeout.ms", "20000");
        props.putIfAbsent("default.api.timeout.ms", "30000");
        try (Admin admin = Admin.create(props)) {
            switch (args[1]) {
                case "principal" -> principal(admin, args);
                case "acls" -> listAcls(admin, args.length > 2 ? args[2] : null);
                default -> usage();
            }
        }
    }

    static void usage() {
        System.err.println("usage: SecureAdmin <admin.properties> principal <name> <prefix>... | acls [<name>]");
        System.exit(2);
    }

    static void principal(Admin admin, String[] args) throws Exception {
        if (args.length < 4) {
            usage();
        }
        String name = args[2];
        String password = System.getenv("SECURE_ADMIN_PASSWORD");
        if (password == null || password.isEmpty()) {
            System.err.println("SecureAdmin: SECURE_ADMIN_PASSWORD is not set");
            System.exit(2);
        }
        admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(
                name, new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), password)))
            .all().get(30, TimeUnit.SECONDS);

        String principal = "User:" + name;
        List<AclBinding> acls = new ArrayList<>();
        for (int i = 3; i < args.length; i++) {
            String prefix = args[i];
            for (String sep : new String[] {".", "-"}) {
                add(acls, ResourceType.TOPIC, prefix + sep, principal, TOPIC_OPS);
                add(acls, ResourceType.GROUP, prefix + sep, principal, GROUP_OPS);
                add(acls, ResourceType.TRANSACTIONAL_ID, prefix + sep, principal, TXN_OPS);
            }
        }
        admin.createAcls(acls).all().get(30, TimeUnit.SECONDS);
        System.out.println("SecureAdmin: " + principal + " (SCRAM-SHA-256) has " + acls.size() + " ACLs");
    }

    static void add(List<AclBinding> out, ResourceType type, String prefix, String principal, AclOperation[] ops) {
        ResourcePattern pattern = new ResourcePattern(type, prefix, PatternType.PREFIXED);
        for (AclOperation op : ops) {
            out.add(new AclBinding(pattern, new AccessControlEntry(principal, "*", op, AclPermissionType.ALLOW)));
        }
    }

    static void listAcls(Admin admin, String name) throws Exception {
        AccessControlEntryFilter entries = new AccessControlEntryFilter(
            name == null ? null : "User:" + name, null, AclOperation.ANY, AclPermissionType.ANY);
        Collection<AclBinding> found = admin.describeAcls(new AclBindingFilter(ResourcePatternFilter.ANY, entries))
            .values().get(30, TimeUnit.SECONDS);
        List<String> lines = new ArrayList<>();
        for (AclBinding b : found) {
            lines.add(String.format("%s %s %s %s(%s) %s", b.entry().principal(), b.entry().permissionType(),
                b.entry().operation(), b.pattern().resourceType(), b.pattern().patternType(), b.pattern().name()));
        }
        lines.sort(null);
        lines.forEach(System.out::println);
    }
}
