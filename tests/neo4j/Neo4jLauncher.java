// A Neo4j Community DBMS for the test suite: embedded (org.neo4j:neo4j), Bolt on a free loopback
// port, authentication on. Run from source by tests/neo4j_server.py:
//
//   NEO4J_LAUNCHER_PASSWORD=… java -cp 'CACHE/lib/*' Neo4jLauncher.java HOME_DIR
//
// Prints "READY bolt://127.0.0.1:PORT" once the DBMS answers, then runs until stdin closes (or
// reads "stop"), so it never outlives the test process that started it, even after a kill -9.
// The password comes from the environment, never from argv (visible to every user in ps).

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.ConnectorPortRegister;
import org.neo4j.configuration.connectors.ConnectorType;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.io.ByteUnit;
import org.neo4j.kernel.internal.GraphDatabaseAPI;

public class Neo4jLauncher {
    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: Neo4jLauncher HOME_DIR (password in NEO4J_LAUNCHER_PASSWORD)");
            System.exit(2);
        }
        String password = System.getenv("NEO4J_LAUNCHER_PASSWORD");
        if (password == null || password.length() < 8) {
            System.err.println("NEO4J_LAUNCHER_PASSWORD must hold a password of 8 characters or more");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        String pagecacheMb = System.getenv().getOrDefault("NEO4J_LAUNCHER_PAGECACHE_MB", "128");
        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
                .setConfig(BoltConnector.enabled, true)
                // port 0: the kernel picks a free port; ConnectorPortRegister says which
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", 0))
                .setConfig(GraphDatabaseSettings.auth_enabled, true)
                // a test server among other processes on a small machine: a small page cache
                // (the benchmark asks for more through NEO4J_LAUNCHER_PAGECACHE_MB)
                .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(Long.parseLong(pagecacheMb)))
                .setConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                .setConfig(GraphDatabaseSettings.preallocate_store_files, false)
                .setConfig(GraphDatabaseSettings.shutdown_transaction_end_timeout, Duration.ofSeconds(5))
                .build();
        Runtime.getRuntime().addShutdownHook(new Thread(dbms::shutdown, "neo4j-shutdown"));

        // The first user, neo4j, starts with the password "neo4j" and must change it; set ours.
        dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME).executeTransactionally(
                "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED", Map.of("password", password));

        GraphDatabaseAPI db = (GraphDatabaseAPI) dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME);
        ConnectorPortRegister ports = db.getDependencyResolver().resolveDependency(ConnectorPortRegister.class);
        var bolt = ports.getLocalAddress(ConnectorType.BOLT);
        System.out.println("READY bolt://" + bolt.getHost() + ":" + bolt.getPort());
        System.out.flush();

        BufferedReader stdin = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = stdin.readLine()) != null && !line.strip().equals("stop")) {
            // nothing else is understood
        }
        System.out.println("STOPPING");
        System.out.flush();
        System.exit(0);  // the shutdown hook stops the DBMS
    }
}
